/**
 * Where the REST paths live; the document's server is this path, relative to wherever it was fetched.
 * Apart from the rest of rest/ so that the HTTP front knows the paths without loading their handler.
 */
export const restBasePath = '/api/v1';
