// The operator CLI (`npm run ops -- <command>`): its commands run from the module itself.
import "../src/ops/cli.js";
