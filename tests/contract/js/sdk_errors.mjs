// What the contract checks share: plain JSON of SDK objects, and an SDK error as plain JSON
// (its class, HTTP status, message and parsed error body), for the Python tests to assert on.

export function plain(value) {
  return JSON.parse(JSON.stringify(value));
}

export function describeError(err) {
  let body = err.error ?? null;
  if (body && typeof body === "object") {
    body = plain(body);
    delete body.httpMeta;
  }
  return {
    threw: true,
    name: err?.constructor?.name ?? null,
    status: err.status ?? null,
    message: String(err.message ?? ""),
    body,
  };
}
