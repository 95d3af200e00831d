export { SecretCipher } from './cipher.js';
export { Masker, MASK, MIN_SECRET_LENGTH } from './mask.js';
export { SecretStore, secretName, secretValue, type SecretScope } from './store.js';
