import { GoogleGenAI } from "@google/genai";

const ai = new GoogleGenAI({});

async function main() {
  const interaction1 = await ai.interactions.create({
    model: "gemini-3-flash-preview",
    input: "I have 2 dogs in my house.",
  });
  console.log("Response 1:", interaction1.steps.at(-1).content[0].text);

  const interaction2 = await ai.interactions.create({
    model: "gemini-3-flash-preview",
    input: "How many paws are in my house?",
    previousInteractionId: interaction1.id,
  });
  console.log("Response 2:", interaction2.steps.at(-1).content[0].text);
  // gemserve test diagnostics (not part of the guide's example): the usage of both turns.
  console.error(JSON.stringify({ id1: interaction1.id, u1: interaction1.usage, u2: interaction2.usage }));
}

await main();
