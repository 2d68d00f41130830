/**
 * A compiled policy as the engine takes it: the WASM module, its data and OPA's manifest. The
 * bundle format (a gzipped tarball), how it is read, signed and delivered, lives in bundles/.
 */

/** The parts of OPA's bundle manifest Signalbox relies on. */
export interface BundleManifest {
  readonly revision: string;
  readonly roots: readonly string[];
  readonly wasm: readonly { entrypoint: string; module: string }[];
  readonly metadata?: Record<string, unknown>;
}

/** A policy bundle, read and checked: what the engine evaluates. */
export interface PolicyBundle {
  /** Where the bundle came from, for logs ("bundles/signalbox.tar.gz"). */
  readonly source: string;
  readonly manifest: BundleManifest;
  readonly wasm: Uint8Array;
  readonly data: Record<string, unknown>;
  /** Every file in the archive by its normalised path ("/policy.wasm"), including Rego sources. */
  readonly files: ReadonlyMap<string, Buffer>;
}
