export { type ContentStoreFactory, type ContentStoreFixture, contentStoreSuite } from './content-store-suite.js';
