#!/usr/bin/env node
import { runDaemon } from '../dist/main.js';

process.exitCode = await runDaemon(process.argv.slice(2));
