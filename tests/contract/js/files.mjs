// Files API checks for gemserve through the official JS SDK (@google/genai).
//
// Run by tests/contract/test_files_sdks.py as `node files.mjs <path>` with
// GOOGLE_GEMINI_BASE_URL and GEMINI_API_KEY set (a key of its own, so the list holds only what
// this script uploads). Uploads <path> as image/jpeg and an in-memory Blob, gets, lists page by
// page, deletes, and prints what the SDK returned as one JSON object; the Python test makes the
// assertions. The JS SDK hands back the server's File JSON as is, so every key is camelCase.
import { GoogleGenAI } from "@google/genai";

import { describeError } from "./sdk_errors.mjs";

const ai = new GoogleGenAI({});
const path = process.argv[2];

function fileSummary(file) {
  return {
    name: file.name ?? null,
    displayName: file.displayName ?? null,
    mimeType: file.mimeType ?? null,
    sizeBytes: file.sizeBytes ?? null,
    sha256Hash: file.sha256Hash ?? null,
    uri: file.uri ?? null,
    downloadUri: file.downloadUri ?? null,
    state: file.state ?? null,
    source: file.source ?? null,
  };
}

const uploadedFile = await ai.files.upload({ file: path, config: { mimeType: "image/jpeg" } });
const blob = new Blob(["plain text from a Blob"], { type: "text/plain" });
const uploadedBlob = await ai.files.upload({
  file: blob,
  config: { mimeType: "text/plain", displayName: "From a Blob" },
});
const got = await ai.files.get({ name: uploadedFile.name });

// One file per page: the pager must follow nextPageToken to see both.
const listed = [];
const pager = await ai.files.list({ config: { pageSize: 1 } });
for await (const file of pager) {
  listed.push(file.name);
}

await ai.files.delete({ name: uploadedFile.name });
await ai.files.delete({ name: uploadedBlob.name });
let afterDelete;
try {
  afterDelete = fileSummary(await ai.files.get({ name: uploadedFile.name }));
} catch (err) {
  afterDelete = describeError(err);
}

console.log(
  JSON.stringify({
    uploadedFile: fileSummary(uploadedFile),
    uploadedBlob: fileSummary(uploadedBlob),
    got: fileSummary(got),
    listed,
    afterDelete,
  }),
);
