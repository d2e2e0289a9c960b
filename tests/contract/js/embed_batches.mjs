// Embedding batches through @google/genai: batches.createEmbeddings with inline texts, poll
// batches.get until it ends, read dest.inlinedEmbedContentResponses and embed the same texts
// with models.embedContent; a batch from a JSONL file answers in dest.fileName; list, delete,
// and a bad request. Prints what it saw as JSON for tests/contract/test_embed_batches.py.
import { GoogleGenAI } from "@google/genai";

const ai = new GoogleGenAI({});
const model = "gemini-embedding-001";
const texts = [
  "The cat sat on the mat.",
  "A cat was sitting on the rug.",
  "Stock markets fell sharply after the interest rate decision.",
];
const config = { taskType: "SEMANTIC_SIMILARITY", outputDimensionality: 32 };
const ended = ["JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"];
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const seen = {};

async function waitDone(job) {
  for (let i = 0; i < 1500 && !ended.includes(job.state); i++) {
    await sleep(200);
    job = await ai.batches.get({ name: job.name });
  }
  return job;
}

let job = await ai.batches.createEmbeddings({
  model,
  src: { inlinedRequests: { contents: texts, config } },
  config: { displayName: "js embeddings" },
});
seen.name = job.name;
seen.createdState = job.state;
job = await waitDone(job);
seen.state = job.state;
seen.batched = (job.dest?.inlinedEmbedContentResponses ?? []).map(
  (a) => a.response?.embedding?.values ?? [],
);
const direct = await ai.models.embedContent({ model, contents: texts, config });
seen.direct = direct.embeddings.map((e) => e.values);
const listed = [];
for await (const b of await ai.batches.list({ config: { pageSize: 50 } })) listed.push(b.name);
seen.listed = listed.includes(job.name);
await ai.batches.delete({ name: job.name });
try {
  await ai.batches.get({ name: job.name });
  seen.deletedStatus = 200;
} catch (e) {
  seen.deletedStatus = e.status;
}

const lines = texts.map((text, i) =>
  JSON.stringify({ key: `t${i}`, request: { content: { parts: [{ text }] } } }),
);
const uploaded = await ai.files.upload({
  file: new Blob([lines.join("\n") + "\n"], { type: "application/jsonl" }),
  config: { mimeType: "application/jsonl" },
});
let fromFile = await ai.batches.createEmbeddings({ model, src: { fileName: uploaded.name } });
fromFile = await waitDone(fromFile);
seen.fileState = fromFile.state;
seen.fileName = fromFile.dest?.fileName ?? null;
seen.fileBatchName = fromFile.name;
await ai.batches.delete({ name: fromFile.name });

try {
  await ai.batches.createEmbeddings({
    model,
    src: { inlinedRequests: { contents: ["hi"], config: { outputDimensionality: 100000 } } },
  });
  seen.badStatus = 200;
} catch (e) {
  seen.badStatus = e.status;
  seen.badMessage = e.message;
}

console.log(JSON.stringify(seen));
