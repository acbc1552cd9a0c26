// Renders Mermaid diagrams with the real renderer: mermaid's own bundle in
// one headless Chromium page, loaded once for all of them (as GitHub and
// mermaid-cli render them, without a page load per diagram).
//
//   node render.mjs OUT_DIR FILE.mmd...
//
// For each diagram that parses, writes OUT_DIR/<name>.svg; prints one JSON
// line per diagram on stdout: {"file", "ok", "width", "height", "error"}.
// Exits 0 when every diagram rendered, 1 otherwise. Run it with the
// directory where package.json's dependencies are installed as the current
// directory (scripts/test-deps.sh installs them in build/mermaid): the
// packages are looked up from there, not from this file's directory.
import fs from 'node:fs'
import path from 'node:path'
import { createRequire } from 'node:module'

const [outDir, ...files] = process.argv.slice(2)
if (!outDir || files.length === 0) {
  console.error('usage: node render.mjs OUT_DIR FILE.mmd...')
  process.exit(2)
}
const require = createRequire(path.join(process.cwd(), 'package.json'))
const puppeteer = require('puppeteer-core')
const mermaidJs = path.join(path.dirname(require.resolve('mermaid/package.json')), 'dist', 'mermaid.min.js')
const browser = await puppeteer.launch({
  executablePath: process.env.NK_CHROMIUM || '/usr/bin/chromium',
  headless: true,
  // As root (CI, a container) Chromium's own sandbox cannot start; the
  // input is this repository's documentation.
  args: ['--no-sandbox', '--disable-setuid-sandbox', '--disable-gpu', '--disable-dev-shm-usage']
})
let failed = 0
try {
  const page = await browser.newPage()
  await page.setViewport({ width: 1200, height: 800 })
  await page.setContent('<!doctype html><html><body><div id="c"></div></body></html>')
  await page.addScriptTag({ path: mermaidJs })
  await page.evaluate(() => globalThis.mermaid.initialize({ startOnLoad: false, theme: 'default' }))
  for (const file of files) {
    const name = path.basename(file).replace(/\.mmd$/, '')
    const definition = fs.readFileSync(file, 'utf8')
    const r = await page.evaluate(async (id, text) => {
      try {
        const c = document.getElementById('c')
        const { svg } = await globalThis.mermaid.render(id, text, c)
        // As mermaid-cli does: serialise through the DOM, so the labels'
        // HTML (<br>) becomes well-formed XML that an SVG viewer accepts.
        c.innerHTML = svg
        return { svg: new XMLSerializer().serializeToString(c.querySelector('svg')) }
      } catch (e) {
        return { error: String(e && e.message ? e.message : e) }
      } finally {
        document.getElementById('c').innerHTML = ''
      }
    }, 'd-' + name.replace(/[^A-Za-z0-9_-]/g, '_'), definition)
    if (r.error !== undefined) {
      failed++
      console.log(JSON.stringify({ file, ok: false, error: r.error }))
      continue
    }
    const tmp = path.join(outDir, `.${name}.svg.${process.pid}`)
    fs.writeFileSync(tmp, r.svg)
    fs.renameSync(tmp, path.join(outDir, `${name}.svg`))
    // The drawn size: mermaid sets the viewBox to the diagram's extent.
    const vb = /viewBox="([-\d.e]+) ([-\d.e]+) ([\d.e]+) ([\d.e]+)"/.exec(r.svg)
    console.log(JSON.stringify({ file, ok: true, width: vb ? Number(vb[3]) : null, height: vb ? Number(vb[4]) : null }))
  }
} finally {
  await browser.close()
}
process.exit(failed ? 1 : 0)
