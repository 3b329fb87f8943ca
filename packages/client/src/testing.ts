/**
 * Test helpers for packages built on @berth/client (the CLI's tests use them):
 * an in-process berthd, and the engines (berthd, containerd) a suite can run
 * against. Not part of the client API proper.
 */
export { engineAvailability, type EngineName, startEngine, type TestEngine } from './test-engines.js';
export { startTestDaemon, type TestDaemon } from './test-daemon.js';
