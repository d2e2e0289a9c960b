// Thinking through the official JS SDK (@google/genai): levels, summaries, the streamed thought
// step and stateless history with thought signatures.
//
// Run by tests/contract/test_thinking.py with GOOGLE_GEMINI_BASE_URL and GEMINI_API_KEY set.
// Each check records what the SDK returned (or threw) as plain JSON; the Python test makes the
// assertions. Checks run one after another; later ones reuse earlier results.
import { GoogleGenAI } from "@google/genai";

import { describeError, plain } from "./sdk_errors.mjs";

const MODEL = "gemini-3-flash-preview";
const PROMPT = "How does AI work?";
const ai = new GoogleGenAI({});

function summary(interaction) {
  return {
    id: interaction.id,
    status: interaction.status,
    steps: plain(interaction.steps),
    text: interaction.steps.at(-1).content[0].text,
    usage: plain(interaction.usage),
  };
}

// One character in the middle of the token, replaced by another base64url character.
function alter(signature) {
  const i = Math.floor(signature.length / 2);
  const replacement = signature[i] === "A" ? "B" : "A";
  return signature.slice(0, i) + replacement + signature.slice(i + 1);
}

function userInput(text) {
  return { type: "user_input", content: [{ type: "text", text }] };
}

// turn 1's user input, its steps as returned, then the follow-up question
function history(turn1, editThought) {
  const [thought, output] = turn1.steps;
  return [
    userInput("I have 2 dogs in my house."),
    editThought({ ...thought }),
    output,
    userInput("How many paws are in my house?"),
  ];
}

async function followUp(turn1, editThought) {
  return summary(
    await ai.interactions.create({
      model: MODEL,
      input: history(turn1, editThought),
      generation_config: { max_output_tokens: 16, temperature: 0 },
    }),
  );
}

// What a call that should fail threw (or that it did not).
async function refused(call) {
  try {
    await call();
    return { threw: false };
  } catch (err) {
    return describeError(err);
  }
}

const checks = {
  // proto3 JSON: lowerCamelCase keys, as a JS user would write them.
  async camelCaseLevel() {
    return summary(
      await ai.interactions.create({
        model: MODEL,
        input: PROMPT,
        generationConfig: { thinkingLevel: "low", maxOutputTokens: 16, temperature: 0 },
      }),
    );
  },
  async camelCaseSummariesNone() {
    return summary(
      await ai.interactions.create({
        model: MODEL,
        input: PROMPT,
        generationConfig: {
          thinkingLevel: "low",
          thinkingSummaries: "none",
          maxOutputTokens: 16,
          temperature: 0,
        },
      }),
    );
  },
  async errorUnknownLevel() {
    await ai.interactions.create({
      model: MODEL,
      input: "Hi",
      generation_config: { thinking_level: "extreme" },
    });
    return { threw: false };
  },
  // The documented consumption: event.type and event.event_type, delta.type.
  async stream() {
    const stream = await ai.interactions.create({
      model: MODEL,
      input: PROMPT,
      generation_config: { thinking_level: "low", max_output_tokens: 16, temperature: 0 },
      stream: true,
    });
    const events = [];
    for await (const event of stream) {
      events.push(plain(event));
    }
    const id = events[0]?.interaction?.id;
    const got = await ai.interactions.get(id);
    return { events, got: { id: got.id, status: got.status, steps: plain(got.steps) } };
  },
  async statelessTurn1() {
    return summary(
      await ai.interactions.create({
        model: MODEL,
        input: "I have 2 dogs in my house.",
        generation_config: { thinking_level: "low", max_output_tokens: 16, temperature: 0 },
      }),
    );
  },
  async statelessTurn2(results) {
    const turn1 = results.statelessTurn1;
    return { sent: history(turn1, (t) => t), ...(await followUp(turn1, (t) => t)) };
  },
  async statelessTampered(results) {
    const turn1 = results.statelessTurn1;
    const edit = (t) => ({ ...t, signature: alter(t.signature) });
    return { sent: history(turn1, edit), ...(await refused(() => followUp(turn1, edit))) };
  },
  async statelessUnsigned(results) {
    const turn1 = results.statelessTurn1;
    const edit = ({ signature: _dropped, ...rest }) => rest;
    return { sent: history(turn1, edit), ...(await refused(() => followUp(turn1, edit))) };
  },
};

const results = {};
for (const [name, check] of Object.entries(checks)) {
  try {
    results[name] = await check(results);
  } catch (err) {
    results[name] = describeError(err);
  }
}
process.stdout.write(JSON.stringify(results));
