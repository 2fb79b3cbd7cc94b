import { ClientError, ClientErrorCode } from './errors.js';

/** pulsar-client's key material for end-to-end encryption. */
export interface EncryptionKeyInfo {
  key: Buffer;
  metadata: { [key: string]: string };
}

/**
 * pulsar-client's base class for end-to-end encryption keys, so that applications subclassing it load
 * unchanged. Strata has no end-to-end encryption yet: a producer or consumer given a `cryptoKeyReader`
 * (or `publicKeyPath`, `encryptionKey`, ...) is refused with UNSUPPORTED, never run unencrypted.
 */
export class CryptoKeyReader {
  getPublicKey(keyName: string, _metadata: { [key: string]: string }): EncryptionKeyInfo {
    throw new ClientError(ClientErrorCode.UNSUPPORTED, `CryptoKeyReader.getPublicKey(${keyName}) must be implemented by a subclass`);
  }

  getPrivateKey(keyName: string, _metadata: { [key: string]: string }): EncryptionKeyInfo {
    throw new ClientError(ClientErrorCode.UNSUPPORTED, `CryptoKeyReader.getPrivateKey(${keyName}) must be implemented by a subclass`);
  }
}
