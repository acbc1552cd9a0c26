//! The guest agent (PID 1 of the VM).
fn main() {}
