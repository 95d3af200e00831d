export const VERSION = '1';

export function greeting(word) {
  return `${word} from {{app}} (version ${VERSION})`;
}
