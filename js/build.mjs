// Bundle each view into influence_widgets/static: ES modules for anywidget, one IIFE for static HTML export.
import * as esbuild from "esbuild";

const out = "../influence_widgets/static";
const common = { bundle: true, minify: true, legalComments: "none", target: "es2020", logLevel: "warning" };
await esbuild.build({ ...common, entryPoints: ["src/ranked.js", "src/scatter.js", "src/strip.js", "src/loo.js", "src/solve.js"], format: "esm", outdir: out });
await esbuild.build({ ...common, entryPoints: ["src/static.js"], format: "iife", outfile: `${out}/static.js` });
