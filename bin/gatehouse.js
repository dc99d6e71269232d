#!/usr/bin/env node
// The `gatehouse` command. Node 24 runs the TypeScript sources directly.
import '../src/cli.ts';
