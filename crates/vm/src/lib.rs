//! VM mode: one QEMU microVM per container, driven through a guest agent.
