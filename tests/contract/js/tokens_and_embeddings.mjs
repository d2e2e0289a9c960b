// countTokens and embedContent through @google/genai. Prints what it saw as JSON for
// tests/contract/test_tokens_and_embeddings.py.
import { GoogleGenAI } from "@google/genai";

const ai = new GoogleGenAI({});
const seen = {};

const question = "Name a colour.";
seen.counted = (await ai.models.countTokens({ model: "gemini-3-flash-preview", contents: question }))
  .totalTokens;
seen.promptTokens = (
  await ai.models.generateContent({
    model: "gemini-3-flash-preview",
    contents: question,
    config: { temperature: 0, maxOutputTokens: 1 },
  })
).usageMetadata.promptTokenCount;

const texts = [
  "The cat sat on the mat.",
  "A cat was sitting on the rug.",
  "Stock markets fell sharply after the interest rate decision.",
];
const many = await ai.models.embedContent({ model: "gemini-embedding-001", contents: texts });
seen.embeddings = many.embeddings.map((e) => e.values);
const one = await ai.models.embedContent({
  model: "text-embedding-004",
  contents: texts[0],
  config: { outputDimensionality: 64, taskType: "SEMANTIC_SIMILARITY" },
});
seen.shortLength = one.embeddings[0].values.length;

try {
  await ai.models.embedContent({
    model: "gemini-embedding-001",
    contents: "hi",
    config: { outputDimensionality: 100000 },
  });
  seen.badStatus = 200;
} catch (e) {
  seen.badStatus = e.status;
  seen.badMessage = e.message;
}

console.log(JSON.stringify(seen));
