export { diskUsage } from './disk-usage.js';
export { SnapshotDirectories } from './snapshot-directories.js';
export {
  SNAPSHOT_SCHEMA_VERSION,
  SnapshotMetaStore,
  SnapshotReadTx,
  SnapshotStoreOpenError,
  SnapshotWriteTx,
  type StoredInfo,
  type StoredSnapshot,
} from './snapshot-meta-store.js';
