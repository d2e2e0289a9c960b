// Contract checks for gemserve through the official JS SDK (@google/genai).
//
// Run by tests/contract/test_js_sdk.py with GOOGLE_GEMINI_BASE_URL and GEMINI_API_KEY set.
// Each check records what the SDK returned (or threw) as plain JSON; the Python test makes the
// assertions. Checks run one after another so that temperature-0 outputs are comparable.
import { GoogleGenAI } from "@google/genai";

import { describeError } from "./sdk_errors.mjs";

const MODEL = "gemini-3-flash-preview";
const ai = new GoogleGenAI({});

function textOf(interaction) {
  return interaction.steps.at(-1).content[0].text;
}

function summary(interaction) {
  return {
    id: interaction.id,
    status: interaction.status,
    model: interaction.model,
    steps: interaction.steps,
    text: textOf(interaction),
    outputText: interaction.output_text ?? null,
    usage: interaction.usage,
  };
}

// Same rule as tests/contract/_support.py: pick_stop_word.
function pickStopWord(text) {
  const words = text.split(/\s+/).map((w) => w.replace(/^[.,;:!?"'()]+|[.,;:!?"'()]+$/g, ""));
  const candidates = words
    .slice(2)
    .filter((w) => w.length >= 4 && /^[A-Za-z]+$/.test(w) && text.indexOf(w) > 0);
  if (candidates.length === 0) throw new Error(`no usable stop word in ${JSON.stringify(text)}`);
  return candidates[Math.floor(candidates.length / 2)];
}

const checks = {
  // proto3 JSON: lowerCamelCase request keys, exactly as a JS user would write them.
  async camelCase() {
    return summary(
      await ai.interactions.create({
        model: MODEL,
        input: "What is your name?",
        systemInstruction: "You are a cat. Your name is Neko.",
        generationConfig: { maxOutputTokens: 12, temperature: 0, seed: 5 },
      }),
    );
  },
  // The same request with the snake_case keys of the guide.
  async snakeCase() {
    return summary(
      await ai.interactions.create({
        model: MODEL,
        input: "What is your name?",
        system_instruction: "You are a cat. Your name is Neko.",
        generation_config: { max_output_tokens: 12, temperature: 0, seed: 5 },
      }),
    );
  },
  async stream() {
    const stream = await ai.interactions.create({
      model: MODEL,
      input: "Explain how AI works",
      generationConfig: { maxOutputTokens: 16, temperature: 0, seed: 11 },
      stream: true,
    });
    const events = [];
    for await (const event of stream) {
      events.push(JSON.parse(JSON.stringify(event)));
    }
    return { events };
  },
  async unaryLikeStream() {
    return summary(
      await ai.interactions.create({
        model: MODEL,
        input: "Explain how AI works",
        generationConfig: { maxOutputTokens: 16, temperature: 0, seed: 11 },
      }),
    );
  },
  // Stop on a word from the middle of the unconstrained answer (camelCase stopSequences).
  async stopSequences(results) {
    const full = results.unaryLikeStream.text;
    const stop = pickStopWord(full);
    const cut = await ai.interactions.create({
      model: MODEL,
      input: "Explain how AI works",
      generationConfig: { maxOutputTokens: 16, temperature: 0, seed: 11, stopSequences: [stop] },
    });
    return { stop, full, ...summary(cut) };
  },
  async v1beta() {
    const beta = new GoogleGenAI({ httpOptions: { apiVersion: "v1beta" } });
    return summary(
      await beta.interactions.create({
        model: MODEL,
        input: "Say hello.",
        generation_config: { max_output_tokens: 6, temperature: 0 },
      }),
    );
  },
  async modelsList() {
    const pager = await ai.models.list();
    const models = [];
    for await (const model of pager) {
      models.push(JSON.parse(JSON.stringify(model)));
    }
    return { models };
  },
  async modelsGet() {
    const model = await ai.models.get({ model: MODEL });
    return JSON.parse(JSON.stringify(model));
  },
  async errorUnknownModel() {
    await ai.interactions.create({ model: "no-such-model", input: "Hi" });
    return { threw: false };
  },
  async errorBadTemperature() {
    await ai.interactions.create({
      model: MODEL,
      input: "Hi",
      generation_config: { temperature: 5 },
    });
    return { threw: false };
  },
  async errorModelsGetUnknown() {
    await ai.models.get({ model: "no-such-model" });
    return { threw: false };
  },
};

const results = {};
for (const [name, check] of Object.entries(checks)) {
  const started = Date.now();
  try {
    results[name] = await check(results);
  } catch (err) {
    results[name] = describeError(err);
  }
  results[name].elapsedMs = Date.now() - started;
}
process.stdout.write(JSON.stringify(results));
