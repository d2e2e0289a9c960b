// The classic surface through @google/genai: generateContent, its stream, a chat, thinking
// and an error. Prints what it saw as JSON for tests/contract/test_classic.py.
import { GoogleGenAI } from "@google/genai";

const ai = new GoogleGenAI({});
const model = "gemini-3-flash-preview";
const config = { temperature: 0, maxOutputTokens: 16 };
const seen = {};

const whole = await ai.models.generateContent({ model, contents: "Count to five.", config });
seen.text = whole.text;
seen.finishReason = whole.candidates[0].finishReason;
seen.promptTokens = whole.usageMetadata.promptTokenCount;

let streamed = "";
let chunks = 0;
for await (const chunk of await ai.models.generateContentStream({
  model,
  contents: "Count to five.",
  config,
})) {
  streamed += chunk.text ?? "";
  chunks += 1;
}
seen.streamed = streamed;
seen.chunks = chunks;

const chat = ai.chats.create({ model, config: { ...config, maxOutputTokens: 8 } });
await chat.sendMessage({ message: "My name is Ana." });
await chat.sendMessage({ message: "What is my name?" });
seen.chatHistory = chat.getHistory().length;

const thought = await ai.models.generateContent({
  model,
  contents: "How many legs do two cats have?",
  config: { ...config, thinkingConfig: { includeThoughts: true, thinkingLevel: "LOW" } },
});
const parts = thought.candidates[0].content.parts;
seen.thoughtParts = parts.filter((p) => p.thought).length;
seen.signature = parts.find((p) => p.thoughtSignature)?.thoughtSignature ?? null;

try {
  await ai.models.generateContent({ model, contents: "hi", config: { candidateCount: 99 } });
  seen.badStatus = 200;
} catch (e) {
  seen.badStatus = e.status;
  seen.badMessage = e.message;
}

console.log(JSON.stringify(seen));
