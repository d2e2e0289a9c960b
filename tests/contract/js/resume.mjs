// Resume an interaction's stream through the JS SDK: ai.interactions.get(id, {stream, last_event_id}).
import { GoogleGenAI } from "@google/genai";

const ai = new GoogleGenAI({});
const stream = await ai.interactions.create({
  model: "gemini-3-flash-preview",
  input: "Count from one to ten.",
  stream: true,
  generation_config: { max_output_tokens: 16 },
});
const seen = [];
for await (const event of stream) seen.push(event);
const id = seen[0].interaction.id;
const resumed = [];
const again = await ai.interactions.get(id, { stream: true, last_event_id: seen[3].event_id });
for await (const event of again) resumed.push(event);
const background = await ai.interactions.create({
  model: "gemini-3-flash-preview",
  input: "Write a poem.",
  background: true,
  generation_config: { max_output_tokens: 24 },
});
const followed = [];
for await (const event of await ai.interactions.get(background.id, { stream: true })) followed.push(event);
const polled = await ai.interactions.get(background.id);
console.log(JSON.stringify({ seen, resumed, backgroundStatus: background.status, followed, polled }));
