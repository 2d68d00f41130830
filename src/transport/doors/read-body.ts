/**
 * Reading an HTTP request body with a size limit, for every HTTP door and endpoint. Past the
 * limit nothing more is kept: the first `limit` bytes are returned with `overLimit`, and the rest
 * is drained (not buffered), so the caller can still answer on the same connection. Each caller
 * decides what too large means: an error, or a body the policy sees as truncated.
 */
import type { IncomingMessage } from 'node:http';

/** A request body read up to a limit; `overLimit` tells the caller the rest was drained and dropped. */
export interface LimitedBody {
  /** The body, or its first `limit` bytes when it was longer. */
  readonly body: Buffer;
  readonly overLimit: boolean;
}

/**
 * Reads at most `limit` bytes of a request body; never rejects for size, so each door chooses
 * between an error and a truncated body.
 */
export function readLimitedBody(req: IncomingMessage, limit: number): Promise<LimitedBody> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer): void => {
      if (size + chunk.length > limit) {
        chunks.push(chunk.subarray(0, limit - size));
        req.off('data', onData);
        // Drain the rest without keeping it; the answer can go out meanwhile.
        req.resume();
        resolve({ body: Buffer.concat(chunks), overLimit: true });
        return;
      }
      size += chunk.length;
      chunks.push(chunk);
    };
    req.on('data', onData);
    req.on('end', () => resolve({ body: Buffer.concat(chunks), overLimit: false }));
    req.on('error', reject);
  });
}
