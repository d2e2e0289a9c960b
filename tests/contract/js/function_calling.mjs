// Function calling through @google/genai: a forced Interactions call answered through
// previous_interaction_id, a classic generateContent call (mode ANY) answered with a
// functionResponse, and a streamed Interactions call. Prints what it saw as JSON for
// tests/contract/test_function_calling.py, which makes the assertions.
//
// argv[2]: {"weather": <JSON Schema of get_weather's parameters>, "result": <its result>}
import { FunctionCallingConfigMode, GoogleGenAI } from "@google/genai";

const ai = new GoogleGenAI({});
const model = "gemini-3-flash-preview";
const { weather, result } = JSON.parse(process.argv[2]);
const input = "What is the weather in Paris?";
const description = "Get the current weather in a city.";
const tools = [{ type: "function", name: "get_weather", description, parameters: weather }];
const seen = {};

// Interactions: forced call -> requires_action -> function_result -> answer.
const called = await ai.interactions.create({
  model,
  input,
  tools,
  generation_config: { tool_choice: "any", temperature: 0, max_output_tokens: 64 },
});
seen.call = { id: called.id, status: called.status, steps: called.steps };
const call = called.steps.find((s) => s.type === "function_call");
const answered = await ai.interactions.create({
  model,
  previous_interaction_id: called.id,
  tools,
  input: [{ type: "function_result", call_id: call.id, name: call.name, result }],
  generation_config: { temperature: 0, max_output_tokens: 64 },
});
seen.answer = {
  status: answered.status,
  previousInteractionId: answered.previous_interaction_id,
  steps: answered.steps,
};

// Classic: functionDeclarations in Google's OpenAPI subset (upper-case types), mode ANY.
const declarations = [
  {
    name: "get_weather",
    description,
    parameters: { type: "OBJECT", properties: { city: { type: "STRING" } }, required: ["city"] },
  },
];
const config = {
  tools: [{ functionDeclarations: declarations }],
  toolConfig: { functionCallingConfig: { mode: FunctionCallingConfigMode.ANY } },
  temperature: 0,
  maxOutputTokens: 64,
};
const classic = await ai.models.generateContent({ model, contents: input, config });
seen.classic = {
  functionCalls: classic.functionCalls ?? null,
  finishReason: classic.candidates[0].finishReason,
};
const fc = classic.functionCalls[0];
const classicAnswer = await ai.models.generateContent({
  model,
  contents: [
    { role: "user", parts: [{ text: input }] },
    classic.candidates[0].content,
    { role: "user", parts: [{ functionResponse: { id: fc.id, name: fc.name, response: result } }] },
  ],
  config: { tools: config.tools, temperature: 0, maxOutputTokens: 64 },
});
seen.classicAnswer = {
  text: classicAnswer.text ?? null,
  functionCalls: classicAnswer.functionCalls ?? null,
};

// Interactions stream: step.start (function_call), arguments_delta pieces, step.stop.
const stream = await ai.interactions.create({
  model,
  input,
  tools,
  stream: true,
  generation_config: { tool_choice: "any", temperature: 0, max_output_tokens: 64 },
});
const events = [];
for await (const event of stream) {
  events.push(JSON.parse(JSON.stringify(event)));
}
seen.events = events;

console.log(JSON.stringify(seen));
