/** The API key is kept for this browser tab's session only (sessionStorage), never in localStorage or a cookie. */
const storageKey = 'hiatus.apiKey';

export function storedKey(): string | null {
  return sessionStorage.getItem(storageKey);
}

export function storeKey(key: string): void {
  sessionStorage.setItem(storageKey, key);
}

export function forgetKey(): void {
  sessionStorage.removeItem(storageKey);
}
