/**
 * gRPC server reflection (grpc.reflection.v1 and v1alpha) with @grpc/reflection, over file
 * descriptors that name their imports.
 *
 * proto-loader merges each package's files into one descriptor (`envoy_config_core_v3.proto`)
 * and leaves every `dependency` list empty; @grpc/reflection sends the imported files along but
 * does not name them either (grpc/grpc-node#3034), so grpcurl cannot resolve a field of another
 * package's type ("google.protobuf.Struct not found"). The lists are filled in here, from the
 * types each file actually references, before the descriptors reach the reflection service.
 * protobufjs also names a map's entry type after the field ("Headers") where protoc, and so
 * grpcurl's descriptor checks, expect "HeadersEntry"; those are renamed the same way.
 */
import type * as grpc from '@grpc/grpc-js';
import type { PackageDefinition } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import descriptor from 'protobufjs/ext/descriptor/index.js';
import type { IDescriptorProto, IFieldDescriptorProto, IFileDescriptorProto } from 'protobufjs/ext/descriptor/index.js';
import { reflectionDefinitions } from './protos.js';

/** Adds grpc.reflection.v1 and v1alpha to `server`, describing every service Signalbox serves. */
export function addReflection(server: grpc.Server): void {
  new ReflectionService(withDependencies(reflectionDefinitions())).addToServer(server);
}

/** `definition` with each file descriptor's `dependency` naming the files whose types it uses. */
export function withDependencies(definition: PackageDefinition): PackageDefinition {
  const files = new Map<string, IFileDescriptorProto>();
  for (const entry of Object.values(definition)) {
    for (const bytes of (entry as { fileDescriptorProtos?: Buffer[] }).fileDescriptorProtos ?? []) {
      const file = descriptor.FileDescriptorProto.toObject(descriptor.FileDescriptorProto.decode(bytes)) as IFileDescriptorProto;
      if (!file.name || files.has(file.name)) continue;
      for (const type of file.messageType ?? []) nameMapEntries(type);
      files.set(file.name, file);
    }
  }
  const definedIn = new Map<string, string>();
  for (const [name, file] of files) for (const symbol of definedSymbols(file)) definedIn.set(symbol, name);
  const encoded: Buffer[] = [];
  for (const [name, file] of files) {
    const imports = new Set<string>();
    for (const { scope, type } of references(file)) {
      const target = resolve(type, scope, definedIn);
      if (target !== undefined && target !== name) imports.add(target);
    }
    encoded.push(Buffer.from(descriptor.FileDescriptorProto.encode(descriptor.FileDescriptorProto.fromObject({ ...file, dependency: [...imports].sort() })).finish()));
  }
  const linked: PackageDefinition = {};
  for (const [key, entry] of Object.entries(definition)) linked[key] = 'fileDescriptorProtos' in entry ? ({ ...entry, fileDescriptorProtos: encoded } as typeof entry) : entry;
  return linked;
}

/** Renames each map field's entry type (in `type` and the types nested in it) as protoc names it: "context_extensions" → "ContextExtensionsEntry". */
function nameMapEntries(type: IDescriptorProto): void {
  for (const nested of type.nestedType ?? []) nameMapEntries(nested);
  for (const field of type.field ?? []) {
    const entry = type.nestedType?.find((nested) => nested.name === field.typeName && nested.options?.mapEntry);
    if (!entry || !field.name) continue;
    const name = `${field.name.replace(/(?:^|_)([a-z0-9])/g, (_all, letter: string) => letter.toUpperCase())}Entry`;
    entry.name = name;
    field.typeName = name;
  }
}

/** Fully qualified names (no leading dot) of the messages, enums and services a file defines. */
function definedSymbols(file: IFileDescriptorProto): string[] {
  const prefix = file.package ? `${file.package}.` : '';
  const symbols: string[] = [];
  const message = (scope: string, type: IDescriptorProto): void => {
    const name = `${scope}${type.name}`;
    symbols.push(name);
    for (const nested of type.nestedType ?? []) message(`${name}.`, nested);
    for (const nested of type.enumType ?? []) symbols.push(`${name}.${nested.name}`);
  };
  for (const type of file.messageType ?? []) message(prefix, type);
  for (const type of file.enumType ?? []) symbols.push(`${prefix}${type.name}`);
  for (const service of file.service ?? []) symbols.push(`${prefix}${service.name}`);
  return symbols;
}

/** Every type name a file refers to, with the scope it is written in (for relative names). */
function references(file: IFileDescriptorProto): { scope: string; type: string }[] {
  const found: { scope: string; type: string }[] = [];
  const fields = (scope: string, list: IFieldDescriptorProto[] | undefined): void => {
    for (const field of list ?? []) {
      if (field.typeName) found.push({ scope, type: field.typeName });
      if (field.extendee) found.push({ scope, type: field.extendee });
    }
  };
  const message = (scope: string, type: IDescriptorProto): void => {
    const name = scope ? `${scope}.${type.name}` : String(type.name);
    fields(name, type.field);
    fields(name, type.extension);
    for (const nested of type.nestedType ?? []) message(name, nested);
  };
  const pkg = file.package ?? '';
  for (const type of file.messageType ?? []) message(pkg, type);
  fields(pkg, file.extension);
  for (const service of file.service ?? []) {
    for (const method of service.method ?? []) {
      if (method.inputType) found.push({ scope: pkg, type: method.inputType });
      if (method.outputType) found.push({ scope: pkg, type: method.outputType });
    }
  }
  return found;
}

/** The file defining `type`: absolute (".a.b.C") as is, relative by protobuf's scoping, innermost scope first. */
function resolve(type: string, scope: string, definedIn: ReadonlyMap<string, string>): string | undefined {
  if (type.startsWith('.')) return definedIn.get(type.slice(1));
  for (let at = scope; at; at = at.includes('.') ? at.slice(0, at.lastIndexOf('.')) : '') {
    const found = definedIn.get(`${at}.${type}`);
    if (found !== undefined) return found;
  }
  return definedIn.get(type);
}
