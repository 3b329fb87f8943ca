export { EventExchangeImpl, validateTopic } from './event-exchange.js';
export { createLogger, isLogLevel, silentLogger } from './logger.js';
export { LevelMetadataStore, MetadataOpenError, SCHEMA_VERSION } from './metadata/level-metadata-store.js';
export { loadPluginPackage, registerPackages } from './plugin-loader.js';
export { resolvePluginConfig } from './plugin-config.js';
export { PluginRegistry, type RegistryOptions } from './registry.js';
export { IntrospectionService } from './services/introspection-service.js';
export { NamespacesServiceImpl } from './services/namespaces-service.js';
