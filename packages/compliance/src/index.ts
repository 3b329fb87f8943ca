export { type ContentStoreFactory, type ContentStoreFixture, contentStoreSuite } from './content-store-suite.js';
export { type SnapshotterFactory, type SnapshotterFixture, type SnapshotterSuiteOptions, snapshotterSuite } from './snapshotter-suite.js';
