// Builds the console into dist/: app.js (one ES module bundle), app.css and index.html.
// `node build.mjs --watch` rebuilds on change.
import { build, context } from "esbuild";
import { copyFile, mkdir, rm } from "node:fs/promises";

const options = {
  entryPoints: { app: "src/main.js" },
  bundle: true,
  format: "esm",
  target: ["chrome110", "firefox115", "safari16"],
  outdir: "dist",
  minify: true,
  sourcemap: "external",
  legalComments: "linked",
  logLevel: process.argv.includes("--quiet") ? "warning" : "info",
};

await rm("dist", { recursive: true, force: true });
await mkdir("dist", { recursive: true });
if (process.argv.includes("--watch")) {
  await copyFile("index.html", "dist/index.html");
  await (await context(options)).watch();
} else {
  await build(options);
  // Last: scripts/setup.sh takes dist/index.html's age for the age of the whole build.
  await copyFile("index.html", "dist/index.html");
}
