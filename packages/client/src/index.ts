export { BerthClient, type BerthClientOptions, DEFAULT_ADDRESS, DEFAULT_NAMESPACE } from './berth-client.js';
export { ClientContext, type RequestOptions } from './client-context.js';
export { type EventEnvelope, EventsClient } from './events-client.js';
export { HealthClient, type HealthStatus } from './health-client.js';
export { IntrospectionClient, pluginFromWire, type WirePlugin } from './introspection-client.js';
export { NamespacesClient } from './namespaces-client.js';
export { VersionClient, type VersionInfo } from './version-client.js';
