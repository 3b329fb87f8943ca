import { token } from './token.js';

/**
 * A gRPC service contributed by a plugin of type io.containerd.grpc.v1.
 * `service` is the fully qualified protobuf name
 * (`containerd.services.namespaces.v1.Namespaces`); `protoFiles` are extra
 * .proto files (absolute paths) defining it when berth's own proto/ does not.
 * The shape of `implementation` (one function per method) is checked by the
 * daemon when it binds the service.
 */
export interface GrpcServiceContribution {
  readonly service: string;
  readonly implementation: object;
  readonly protoFiles?: readonly string[];
}
export const GrpcService = token<GrpcServiceContribution>('GrpcService', { multi: true });
