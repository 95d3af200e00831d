/**
 * Encryption of secrets at rest: AES-256-GCM with a random 96-bit nonce per value. The key comes
 * from VALVE_SECRET_KEY (32 bytes, base64) or, on the embedded default, from
 * `<data>/secret.key`, made on first start with mode 600. Keep that file out of backups of the
 * database: either alone reveals nothing.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export class SecretCipher {
  private constructor(private readonly key: Buffer) {}

  static load(dataDir: string, env: NodeJS.ProcessEnv = process.env): SecretCipher {
    if (env.VALVE_SECRET_KEY) {
      const key = Buffer.from(env.VALVE_SECRET_KEY, 'base64');
      if (key.length !== 32) throw new Error('VALVE_SECRET_KEY: expected 32 bytes, base64-encoded');
      return new SecretCipher(key);
    }
    const file = join(dataDir, 'secret.key');
    if (!existsSync(file)) {
      writeFileSync(file, randomBytes(32).toString('base64') + '\n', { mode: 0o600, flag: 'wx' });
    }
    const key = Buffer.from(readFileSync(file, 'utf8').trim(), 'base64');
    if (key.length !== 32) throw new Error(`${file}: expected 32 bytes, base64-encoded`);
    return new SecretCipher(key);
  }

  /** `v1.<nonce>.<tag>.<ciphertext>`, base64url parts; `aad` binds the value to its owner and name. */
  encrypt(plaintext: string, aad: string): string {
    const nonce = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.key, nonce);
    cipher.setAAD(Buffer.from(aad));
    const data = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return ['v1', nonce, cipher.getAuthTag(), data]
      .map((p) => (typeof p === 'string' ? p : p.toString('base64url')))
      .join('.');
  }

  decrypt(sealed: string, aad: string): string {
    const [version, nonce, tag, data] = sealed.split('.');
    if (version !== 'v1' || !nonce || !tag || data === undefined)
      throw new Error('secret: unknown format');
    const decipher = createDecipheriv('aes-256-gcm', this.key, Buffer.from(nonce, 'base64url'));
    decipher.setAAD(Buffer.from(aad));
    decipher.setAuthTag(Buffer.from(tag, 'base64url'));
    return Buffer.concat([
      decipher.update(Buffer.from(data, 'base64url')),
      decipher.final(),
    ]).toString('utf8');
  }
}
