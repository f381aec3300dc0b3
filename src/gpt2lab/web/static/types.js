// @ts-check
// The shapes of the server's answers (gpt2lab/web/lab.py builds them), for the JSDoc types of
// the other modules. This module holds no code: `import("./types.js").RunAnswer` names a type.

/**
 * One model of /api/models.
 * @typedef {object} ModelInfo
 * @property {string} name
 * @property {{n_layer: number, n_head: number, n_embd: number, n_positions: number}} config
 * @property {number} parameters
 * @property {object[]} steps
 * @property {Record<number, string>} partial_tokens token id -> its bytes, for partial UTF-8
 * @property {SaeInfo[]} [saes] the sparse autoencoders served for this model
 */

/**
 * A sparse autoencoder of /api/models.
 * @typedef {object} SaeInfo
 * @property {string} name
 * @property {string} hook_name the step it reads
 * @property {number} d_in
 * @property {number} d_sae how many features
 * @property {string} activation
 * @property {number | null} k
 */

/**
 * The answer of /api/sae/features: the strongest features at each position of the prompt.
 * @typedef {object} SaeFeaturesAnswer
 * @property {SaeInfo} sae
 * @property {{token: string, features: {feature: number, activation: number}[]}[]} positions
 */

/**
 * The answer of /api/sae/feature: a feature's dashboard as self-contained HTML.
 * @typedef {object} SaeFeatureAnswer
 * @property {number} feature
 * @property {string} contexts_from
 * @property {number} fraction_active
 * @property {number} max_activation
 * @property {string} html
 */

/**
 * The server's limits, from /api/models.
 * @typedef {object} Limits
 * @property {number} max_prompt_tokens
 * @property {number} max_prompt_chars
 * @property {number} max_new_tokens
 * @property {number} max_window
 * @property {number} max_edits
 * @property {number} max_concurrent
 * @property {number} max_body_bytes
 */

/**
 * The answer of /api/models.
 * @typedef {object} ModelsAnswer
 * @property {ModelInfo[]} models
 * @property {Limits} limits
 */

/**
 * An edit, as /api/run and the other requests take it.
 * @typedef {(
 *   {kind: "ablate_head", layer: number, head: number, how: string} |
 *   {kind: "ablate_mlp", layer: number, how: string} |
 *   {kind: "scale_neuron", layer: number, neuron: number, factor: number} |
 *   {kind: "steer", layer: number, positive: string, negative: string, scale: number} |
 *   {kind: "set_value", step: string, index: number[], value: number} |
 *   {kind: "sae_feature", sae: string, feature: number, strength: number, mode: string}
 * )} Edit
 */

/**
 * What the page sends to /api/run, kept with its answer.
 * @typedef {object} RunRequest
 * @property {string} model
 * @property {string} prompt
 * @property {Edit[]} edits
 * @property {number} layer
 */

/**
 * One step of a run: a hook name, its shape and formula.
 * @typedef {object} StepInfo
 * @property {string} name
 * @property {number[]} shape
 * @property {string} axes like "[B, T, C]"
 * @property {number | null} head_axis where in the shape the head axis is (null: no heads)
 * @property {string} formula
 * @property {string} title the heading of its cell, from hooks.STEPS
 */

/**
 * One likely next token of a run.
 * @typedef {{id: number, token: string, logit: number, prob: number}} NextToken
 */

/**
 * The answer of /api/run.
 * @typedef {object} RunAnswer
 * @property {number[]} ids
 * @property {string[]} tokens
 * @property {number} layer
 * @property {StepInfo[]} steps
 * @property {NextToken[]} next
 */

/**
 * A run as the page keeps it: the answer with the request that made it.
 * @typedef {RunAnswer & {request: RunRequest}} Run
 */

/**
 * One word of /api/tokenize, with its byte-pair merges.
 * @typedef {object} Word
 * @property {string} word
 * @property {string} symbols
 * @property {boolean} special
 * @property {string[]} start
 * @property {{rank: number, pair: string[], parts: string[]}[]} merges
 * @property {string[]} pieces
 */

/**
 * The answer of /api/tokenize.
 * @typedef {object} TokenizeAnswer
 * @property {number[]} ids
 * @property {string[]} tokens
 * @property {string[]} texts
 * @property {Word[]} words
 */

/**
 * The answer of /api/step: a window of one step's numbers (null: minus infinity).
 * @typedef {object} StepWindow
 * @property {string} name
 * @property {number[]} shape
 * @property {string} formula
 * @property {number | null} head
 * @property {string[]} axes without B
 * @property {number} rows
 * @property {number} columns
 * @property {number} row_offset
 * @property {number} col_offset
 * @property {number[] | null} column_ids
 * @property {string[] | null} column_tokens
 * @property {(number | null)[][]} values
 */

/**
 * The answer of /api/lens: the top tokens at each read-out point and position.
 * @typedef {object} LensAnswer
 * @property {string[]} points
 * @property {string[]} tokens
 * @property {string[][][]} top_tokens
 * @property {number[][][]} top_ids
 * @property {number[][][]} top_probs
 */

/**
 * One token of /api/sampling: what each filter did to it.
 * @typedef {object} SamplingRow
 * @property {number} token_id
 * @property {string} token
 * @property {number} logit
 * @property {number} scaled_logit
 * @property {number} prob_before
 * @property {boolean} kept_top_k
 * @property {boolean} kept_top_p
 * @property {number} prob
 */

/**
 * The answer of /api/sampling.
 * @typedef {object} SamplingAnswer
 * @property {SamplingRow[]} rows
 * @property {number} kept_top_k
 * @property {number} effective_k
 * @property {number} mass_kept
 * @property {number} chosen
 * @property {string} chosen_token
 * @property {number} chosen_prob
 * @property {number[]} ids
 * @property {string} text
 */

/**
 * The answer of /api/edit: next-token probabilities without and with the edits.
 * @typedef {{rows: {id: number, token: string, before: number, after: number}[]}} EditAnswer
 */

/**
 * One server-sent event of /api/generate: "token" ({text}), or "error" ({detail}).
 * @typedef {{event: string, data: {text?: string, detail?: string}}} GenerateEvent
 */

export {};
