import "../src/platform/node-version.js";
import { runOps } from "../src/ops/cli.js";

process.exit(await runOps(process.argv.slice(2)));
