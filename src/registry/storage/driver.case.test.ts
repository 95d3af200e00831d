import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { RegistryError } from '../errors.js';
import { readBlob, type BlobStorage, type ListedBlob } from './driver.js';

/**
 * The contract every blob storage driver keeps, run by each driver's own test file against
 * the real thing (a directory; an S3 server on loopback). This file registers no test itself.
 */
export interface BlobStorageContractSetup {
  storage: BlobStorage;
  /** Everything the driver has written anywhere (files, object keys), to prove nothing leaked. */
  everything(): Promise<string[]>;
  /** A size that takes the driver's large-blob path (S3: more than one multipart part). */
  largeSize: number;
  cleanup(): Promise<void>;
}

export const sha256 = (data: Buffer | string) =>
  `sha256:${createHash('sha256').update(data).digest('hex')}`;

async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}

async function listAll(storage: BlobStorage): Promise<ListedBlob[]> {
  const found: ListedBlob[] = [];
  for await (const blob of storage.list()) found.push(blob);
  return found.sort((a, b) => (a.digest < b.digest ? -1 : 1));
}

async function stagingFiles(storage: BlobStorage): Promise<string[]> {
  try {
    return await readdir(storage.stagingDir);
  } catch {
    return [];
  }
}

/** A stream that sends `good` and then fails, like a client that disconnects mid-upload. */
function failingStream(good: Buffer): Readable {
  let sent = false;
  return new Readable({
    read() {
      if (!sent) {
        sent = true;
        this.push(good);
      } else {
        this.destroy(new Error('connection reset'));
      }
    },
  });
}

function rejectsWithCode(code: string, status?: number) {
  return (error: unknown) => {
    assert.ok(error instanceof RegistryError, `expected a RegistryError, got ${String(error)}`);
    assert.equal(error.code, code);
    if (status !== undefined) assert.equal(error.status, status);
    return true;
  };
}

export function describeBlobStorageContract(
  name: string,
  setup: () => Promise<BlobStorageContractSetup>,
) {
  describe(`${name} blob storage: contract`, () => {
    let ctx: BlobStorageContractSetup;
    let storage: BlobStorage;

    before(async () => {
      ctx = await setup();
      storage = ctx.storage;
    });
    after(async () => {
      await ctx?.cleanup();
    });

    it('stores a buffer under its digest, verified, and reads it back', async () => {
      const data = Buffer.from('hello, contract');
      const stored = await storage.put(data, sha256(data));
      assert.deepEqual(stored, { digest: sha256(data), size: data.length });
      const info = await storage.stat(stored.digest);
      assert.equal(info?.size, data.length);
      assert.ok(info && Math.abs(info.modifiedAt.getTime() - Date.now()) < 60_000);
      assert.deepEqual(await readBlob(storage, stored.digest), data);
      assert.deepEqual(await stagingFiles(storage), []);
    });

    it('stores a stream without an expected digest, and the same content only once', async () => {
      const data = Buffer.from('streamed '.repeat(1000));
      const first = await storage.put(Readable.from([data.subarray(0, 100), data.subarray(100)]));
      assert.equal(first.digest, sha256(data));
      const before = (await listAll(storage)).length;
      const again = await Promise.all([storage.put(data), storage.put(data, first.digest)]);
      assert.deepEqual(again, [first, first]);
      assert.equal((await listAll(storage)).length, before);
      assert.deepEqual(await readBlob(storage, first.digest), data);
    });

    it('stores an empty blob', async () => {
      const empty = Buffer.alloc(0);
      const stored = await storage.put(empty, sha256(empty));
      assert.equal((await storage.stat(stored.digest))?.size, 0);
      assert.deepEqual(await readBlob(storage, stored.digest), empty);
    });

    it('a wrong digest leaves nothing anywhere', async () => {
      const before = await ctx.everything();
      const data = Buffer.from('not what you said');
      const claimed = sha256('something else');
      await assert.rejects(storage.put(data, claimed), rejectsWithCode('DIGEST_INVALID'));
      await assert.rejects(
        storage.put(Readable.from([data]), claimed),
        rejectsWithCode('DIGEST_INVALID'),
      );
      assert.equal(await storage.stat(claimed), null);
      assert.equal(await storage.stat(sha256(data)), null);
      assert.deepEqual(await ctx.everything(), before);
    });

    it('a source that fails half-way leaves nothing visible', async () => {
      const before = await ctx.everything();
      const part = Buffer.alloc(64 * 1024, 'x');
      await assert.rejects(storage.put(failingStream(part)), /connection reset/);
      await assert.rejects(
        storage.put(failingStream(part), sha256(Buffer.concat([part, part]))),
        /connection reset/,
      );
      assert.equal(await storage.stat(sha256(part)), null);
      assert.deepEqual(await ctx.everything(), before);
    });

    it('refuses a digest that is not sha256:<64 hex>', async () => {
      await assert.rejects(
        storage.put(Buffer.from('x'), 'md5:abc'),
        rejectsWithCode('DIGEST_INVALID'),
      );
    });

    it('reads inclusive ranges, and refuses ranges outside the blob with 416', async () => {
      const data = Buffer.from('0123456789abcdef');
      const { digest } = await storage.put(data);
      const range = async (start: number, end: number) =>
        (await readAll((await storage.open(digest, { start, end }))!)).toString();
      assert.equal(await range(0, 0), '0');
      assert.equal(await range(3, 9), '3456789');
      assert.equal(await range(15, 15), 'f');
      assert.equal(await range(0, 15), data.toString());
      await assert.rejects(
        storage.open(digest, { start: 10, end: 16 }),
        rejectsWithCode('SIZE_INVALID', 416),
      );
      await assert.rejects(
        storage.open(digest, { start: 16, end: 20 }),
        rejectsWithCode('SIZE_INVALID', 416),
      );
      await assert.rejects(
        storage.open(digest, { start: 5, end: 4 }),
        rejectsWithCode('SIZE_INVALID', 416),
      );
    });

    it('answers null for a blob it does not have', async () => {
      const unknown = sha256('never stored');
      assert.equal(await storage.stat(unknown), null);
      assert.equal(await storage.open(unknown), null);
      assert.equal(await storage.open(unknown, { start: 0, end: 1 }), null);
    });

    it('adopts a verified local file; adopting content it has changes nothing', async () => {
      const data = Buffer.from('adopted bytes');
      const file = path.join(storage.stagingDir, 'adopt-me');
      await writeFile(file, data);
      await storage.adopt(file, sha256(data));
      assert.deepEqual(await readBlob(storage, sha256(data)), data);
      const modifiedAt = (await storage.stat(sha256(data)))!.modifiedAt;
      await writeFile(file, data);
      await storage.adopt(file, sha256(data));
      assert.deepEqual((await storage.stat(sha256(data)))!.modifiedAt, modifiedAt);
      await rm(file, { force: true });
    });

    it('stores and reads a large blob', async () => {
      const data = Buffer.alloc(ctx.largeSize);
      for (let i = 0; i + 4 <= data.length; i += 4096) data.writeUInt32BE(i, i);
      const chunks = [];
      for (let i = 0; i < data.length; i += 1024 * 1024)
        chunks.push(data.subarray(i, i + 1024 * 1024));
      const stored = await storage.put(Readable.from(chunks), sha256(data));
      assert.equal((await storage.stat(stored.digest))?.size, data.length);
      const tail = await readAll(
        (await storage.open(stored.digest, { start: data.length - 10, end: data.length - 1 }))!,
      );
      assert.deepEqual(tail, data.subarray(data.length - 10));
      assert.ok((await readBlob(storage, stored.digest))!.equals(data));
    });

    it('lists every blob with its size, and deletes', async () => {
      const blobs = ['list-a', 'list-b', 'list-c', 'list-d', 'list-e'].map((s) => Buffer.from(s));
      for (const blob of blobs) await storage.put(blob);
      const listed = await listAll(storage);
      for (const blob of blobs) {
        const entry = listed.find((item) => item.digest === sha256(blob));
        assert.ok(entry, `${sha256(blob)} is listed`);
        assert.equal(entry.size, blob.length);
        assert.ok(entry.modifiedAt instanceof Date);
      }
      assert.equal(new Set(listed.map((item) => item.digest)).size, listed.length);

      await storage.delete(sha256(blobs[0]!));
      await storage.delete(sha256(blobs[0]!));
      assert.equal(await storage.stat(sha256(blobs[0]!)), null);
      assert.equal(await storage.open(sha256(blobs[0]!)), null);
      const after = (await listAll(storage)).map((item) => item.digest);
      assert.ok(!after.includes(sha256(blobs[0]!)));
      assert.ok(after.includes(sha256(blobs[1]!)));
      assert.equal(after.length, listed.length - 1);
    });
  });
}
