// The build: reproducible (same input, same bytes), self-contained (no CDN,
// relative asset paths), and the page carries the names the browser tests
// and screen readers rely on.

import assert from "node:assert/strict";
import { mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { build } from "../build.mjs";

let first;
let second;
const dirs = [];

before(async () => {
  for (let i = 0; i < 2; i += 1) dirs.push(await mkdtemp(join(tmpdir(), "essen-dashboard-")));
  first = await build({ outdir: dirs[0], quiet: true });
  second = await build({ outdir: dirs[1], quiet: true });
});

after(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

test("two builds are byte-identical", async () => {
  const names = (await readdir(dirs[0])).sort();
  assert.deepEqual((await readdir(dirs[1])).sort(), names);
  for (const name of names) {
    const [a, b] = await Promise.all([readFile(join(dirs[0], name)), readFile(join(dirs[1], name))]);
    assert.ok(a.equals(b), `${name} differs between builds`);
  }
  assert.equal(first.js, second.js);
});

test("index.html loads hashed assets by relative path, config.js first", async () => {
  const html = await readFile(join(dirs[0], "index.html"), "utf8");
  assert.match(first.js, /^main-[A-Z0-9]+\.js$/);
  assert.match(first.css, /^main-[A-Z0-9]+\.css$/);
  assert.ok(html.includes(`<script type="module" src="./${first.js}"></script>`));
  assert.ok(html.includes(`<link rel="stylesheet" href="./${first.css}">`));
  assert.ok(html.indexOf('src="./config.js"') < html.indexOf(first.js), "config.js runs before the app");
  assert.doesNotMatch(html, /(src|href)="(https?:)?\/\//, "no absolute or CDN URLs");
  const names = await readdir(dirs[0]);
  assert.ok(names.includes("config.js"));
});

test("the bundle is self-contained", async () => {
  const js = await readFile(join(dirs[0], first.js), "utf8");
  assert.doesNotMatch(js, /\bimport\s*\(?\s*["'](https?:|\/\/)/, "no remote imports");
  assert.doesNotMatch(js, /cdn\.|unpkg\.com|jsdelivr/);
  assert.doesNotMatch(js, /^import /m, "everything bundled, nothing left to resolve");
});

test("accessible names and test ids are in the page", async () => {
  const html = await readFile(join(dirs[0], "index.html"), "utf8");
  assert.match(html, /<label for="login-username">Username<\/label>/);
  assert.match(html, /<label for="login-password">Password<\/label>/);
  assert.match(html, /<button id="login-submit" type="submit"[^>]*>Sign in<\/button>/);
  for (const [id, name] of [["metrics-title", "Metrics"], ["health-title", "Service health"], ["activity-title", "Activity trend"], ["feed-title", "Live message feed"]]) {
    assert.match(html, new RegExp(`<section[^>]+aria-labelledby="${id}"`), `region for ${name}`);
    assert.match(html, new RegExp(`<h2 id="${id}">${name}</h2>`));
  }
  assert.match(html, /role="status"[^>]*aria-label="Connection status"/);
  for (const card of ["messages-per-minute", "answered", "error-rate", "latency", "active-users", "instances", "uptime"]) {
    assert.match(html, new RegExp(`data-testid="card-${card}"`));
  }
});
