// cachedContents and batches through @google/genai: create, get, update, list and delete a
// cache, generate with it; create a batch, poll it, read its inline responses, list, cancel
// and delete. Prints what it saw as JSON for tests/contract/test_caches_batches.py.
import { GoogleGenAI } from "@google/genai";

const ai = new GoogleGenAI({});
const model = "gemini-3-flash-preview";
const notes =
  "Field notes. " +
  Array.from({ length: 20 }, (_, i) => `Day ${i + 1}: the heron stood by the pond.`).join(" ");
const ended = ["JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"];
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const seen = {};

const cache = await ai.caches.create({
  model,
  config: {
    contents: [{ role: "user", parts: [{ text: notes }] }],
    systemInstruction: "Answer from the notes only.",
    displayName: "js notes",
    ttl: "300s",
  },
});
seen.cacheName = cache.name;
seen.cacheTokens = cache.usageMetadata?.totalTokenCount ?? 0;
seen.createdExpire = cache.expireTime;
seen.gotName = (await ai.caches.get({ name: cache.name })).name;
seen.updatedExpire = (await ai.caches.update({ name: cache.name, config: { ttl: "900s" } }))
  .expireTime;
const names = [];
for await (const c of await ai.caches.list({ config: { pageSize: 10 } })) names.push(c.name);
seen.cacheListed = names.includes(cache.name);

const answer = await ai.models.generateContent({
  model,
  contents: "Where did the heron stand?",
  config: { cachedContent: cache.name, maxOutputTokens: 8, temperature: 0 },
});
seen.answer = answer.text;
seen.cachedTokens = answer.usageMetadata?.cachedContentTokenCount ?? 0;
await ai.caches.delete({ name: cache.name });
try {
  await ai.caches.get({ name: cache.name });
  seen.deletedStatus = 200;
} catch (e) {
  seen.deletedStatus = e.status;
}

const request = (text, key, maxOutputTokens = 8) => ({
  contents: [{ role: "user", parts: [{ text }] }],
  config: { temperature: 0, maxOutputTokens },
  metadata: { key },
});
let job = await ai.batches.create({
  model,
  src: [request("Name a colour.", "a"), request("Name a fruit.", "b")],
  config: { displayName: "js batch" },
});
seen.batchName = job.name;
for (let i = 0; i < 1500 && !ended.includes(job.state); i++) {
  await sleep(200);
  job = await ai.batches.get({ name: job.name });
}
seen.batchState = job.state;
const answers = job.dest?.inlinedResponses ?? [];
seen.batchKeys = answers.map((a) => a.metadata?.key);
seen.batchTexts = answers.map((a) => a.response?.candidates?.[0]?.content?.parts?.[0]?.text ?? "");
const listed = [];
for await (const b of await ai.batches.list({ config: { pageSize: 50 } })) listed.push(b.name);
seen.batchListed = listed.includes(job.name);
await ai.batches.delete({ name: job.name });

let doomed = await ai.batches.create({
  model,
  src: [1, 2, 3, 4].map((i) => request(`Write a long story about ship ${i}.`, `s${i}`, 400)),
});
await ai.batches.cancel({ name: doomed.name });
for (let i = 0; i < 1500 && !ended.includes(doomed.state); i++) {
  await sleep(200);
  doomed = await ai.batches.get({ name: doomed.name });
}
seen.cancelState = doomed.state;
await ai.batches.delete({ name: doomed.name });

console.log(JSON.stringify(seen));
