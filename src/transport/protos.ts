/**
 * Loading the .proto files in proto/ for grpc-js. Envoy's messages are decoded with options that
 * make the object match opa-envoy-plugin's input encoding (see transport/doors/envoy-grpc.ts).
 */
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { projectRoot } from '../core/paths.js';

/** The proto/ folder of the installed package, which holds Envoy's, grpc.health's and Signalbox's .proto files. */
export function protoDir(): string {
  return join(projectRoot(), 'proto');
}

/** Decoding that matches opa-envoy-plugin: only set fields, numbers for int64 and enums, base64 bytes. */
export const ENVOY_LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: Number,
  enums: Number,
  bytes: String,
  defaults: false,
  arrays: false,
  objects: false,
  oneofs: false,
};

/** ext_proc: bytes as Buffers (bodies), enum names (processing modes), which oneof is set. */
const EXT_PROC_LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: false,
  arrays: false,
  objects: false,
  oneofs: true,
};

const NATIVE_LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
};

/** The gRPC service definitions the server registers, with client constructors for callers. */
export interface LoadedServices {
  authorization: grpc.ServiceDefinition;
  health: grpc.ServiceDefinition;
  decision: grpc.ServiceDefinition;
  /** Envoy's ExternalProcessor (ext_proc). */
  processor: grpc.ServiceDefinition;
  /** Client constructors, for tests, the benchmark and the CLI. */
  clients: {
    Authorization: grpc.ServiceClientConstructor;
    Health: grpc.ServiceClientConstructor;
    DecisionService: grpc.ServiceClientConstructor;
    ExternalProcessor: grpc.ServiceClientConstructor;
  };
}

/** The .proto files whose services the server registers. */
const SERVED_PROTOS = [
  'envoy/service/auth/v3/external_auth.proto',
  'envoy/service/ext_proc/v3/external_processor.proto',
  'grpc/health/v1/health.proto',
  'signalbox/v1/signalbox.proto',
];

/**
 * The served files as one package definition for gRPC server reflection: loaded together, so
 * each package's descriptor (proto-loader merges a package's files into one) holds every type
 * any service needs, and with the field names as written, not the camelCase the decoders use.
 */
export function reflectionDefinitions(): protoLoader.PackageDefinition {
  return protoLoader.loadSync(SERVED_PROTOS, { keepCase: true, includeDirs: [protoDir()] });
}

let cached: LoadedServices | undefined;

type Namespace = Record<string, unknown>;

function lookup(root: grpc.GrpcObject, path: string): grpc.ServiceClientConstructor {
  let node: unknown = root;
  for (const part of path.split('.')) node = (node as Namespace)[part];
  return node as grpc.ServiceClientConstructor;
}

/** Loads the .proto files on first use and returns the same definitions after, so servers and clients in one process share them. */
export function loadServices(): LoadedServices {
  if (cached) return cached;
  const includeDirs = [protoDir()];
  const envoy = grpc.loadPackageDefinition(
    protoLoader.loadSync(['envoy/service/auth/v3/external_auth.proto', 'grpc/health/v1/health.proto'], { ...ENVOY_LOADER_OPTIONS, includeDirs }),
  );
  const extProc = grpc.loadPackageDefinition(
    protoLoader.loadSync(['envoy/service/ext_proc/v3/external_processor.proto'], { ...EXT_PROC_LOADER_OPTIONS, includeDirs }),
  );
  const native = grpc.loadPackageDefinition(protoLoader.loadSync(['signalbox/v1/signalbox.proto'], { ...NATIVE_LOADER_OPTIONS, includeDirs }));
  const Authorization = lookup(envoy, 'envoy.service.auth.v3.Authorization');
  const Health = lookup(envoy, 'grpc.health.v1.Health');
  const DecisionService = lookup(native, 'signalbox.v1.DecisionService');
  const ExternalProcessor = lookup(extProc, 'envoy.service.ext_proc.v3.ExternalProcessor');
  cached = {
    authorization: Authorization.service,
    health: Health.service,
    decision: DecisionService.service,
    processor: ExternalProcessor.service,
    clients: { Authorization, Health, DecisionService, ExternalProcessor },
  };
  return cached;
}
