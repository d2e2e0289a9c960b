// JSON output through @google/genai: classic responseJsonSchema and an Interactions
// response_format. Prints both answers as JSON for tests/contract/test_structured_output.py.
import { GoogleGenAI } from "@google/genai";

const ai = new GoogleGenAI({});
const model = "gemini-3-flash-preview";
const schema = JSON.parse(process.argv[2]);
const contents = "Give me a recipe for pancakes.";

const classic = await ai.models.generateContent({
  model,
  contents,
  config: { responseMimeType: "application/json", responseJsonSchema: schema, maxOutputTokens: 120 },
});
const interaction = await ai.interactions.create({
  model,
  input: contents,
  response_format: { type: "text", mime_type: "application/json", schema },
  generation_config: { max_output_tokens: 120 },
});
console.log(
  JSON.stringify({ classic: classic.text, interaction: interaction.steps.at(-1).content[0].text }),
);
