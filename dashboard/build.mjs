/**
 * Build the dashboard into dist/: one bundled, minified ES module and one
 * stylesheet (content-hashed names), index.html pointing at them with
 * relative paths, and config.js copied as is (the per-deployment override).
 *
 * Deterministic: the same sources and lockfile give byte-identical output
 * (no timestamps, content hashes only), and nothing is fetched at build or
 * run time.
 *
 *   node build.mjs              build into ./dist
 *   node build.mjs --outdir X   build into X
 */

import { copyFile, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const src = join(here, "src");

/** Build into ``outdir``; returns {files: [{name, bytes, gzip}]}. */
export async function build({ outdir = join(here, "dist"), quiet = false } = {}) {
  outdir = resolve(outdir);
  await rm(outdir, { recursive: true, force: true });
  await mkdir(outdir, { recursive: true });

  const result = await esbuild.build({
    absWorkingDir: here,
    entryPoints: { main: join(src, "main.js") },
    bundle: true,
    format: "esm",
    platform: "browser",
    target: ["chrome100", "firefox100", "safari15.4", "edge100"],
    minify: true,
    sourcemap: "linked",
    sourcesContent: true,
    legalComments: "linked",
    entryNames: "[name]-[hash]",
    assetNames: "[name]-[hash]",
    outdir,
    metafile: true,
    logLevel: quiet ? "silent" : "warning",
    charset: "utf8",
  });

  // The entry's outputs: main-HASH.js and main-HASH.css.
  let js = null;
  let css = null;
  for (const [file, info] of Object.entries(result.metafile.outputs)) {
    if (info.entryPoint && file.endsWith(".js")) js = relative(outdir, resolve(here, file));
    if (file.endsWith(".css")) css = relative(outdir, resolve(here, file));
  }
  if (!js || !css) throw new Error(`build did not produce a script and a stylesheet (${js}, ${css})`);

  let html = await readFile(join(src, "index.html"), "utf8");
  for (const [placeholder, name] of [['href="./main.css"', `href="./${css}"`], ['src="./main.js"', `src="./${js}"`]]) {
    if (!html.includes(placeholder)) throw new Error(`index.html lacks ${placeholder}`);
    html = html.replace(placeholder, name);
  }
  await writeFile(join(outdir, "index.html"), html);
  await copyFile(join(src, "config.js"), join(outdir, "config.js"));

  const files = [];
  for (const name of ["index.html", "config.js", js, css]) {
    const body = await readFile(join(outdir, name));
    files.push({ name, bytes: body.length, gzip: gzipSync(body, { level: 9 }).length });
  }
  if (!quiet) {
    for (const f of files) console.log(`${f.name.padEnd(28)} ${String(f.bytes).padStart(8)} B  ${String(f.gzip).padStart(7)} B gzip`);
  }
  return { outdir, files, js, css };
}

const invoked = process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (invoked) {
  const at = process.argv.indexOf("--outdir");
  const outdir = at > 0 ? process.argv[at + 1] : undefined;
  build({ outdir }).catch((error) => {
    console.error(error);
    process.exit(1);
  });
}
