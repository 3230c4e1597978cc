/**
 * Deployments: where a model can be called. A deployment is one endpoint with one key: an OpenAI organization, a
 * second key for more quota, Azure OpenAI or a regional endpoint, an OpenAI-compatible gateway, an Anthropic
 * workspace. Each speaks one wire dialect (the OpenAI Responses API or the Anthropic Messages API), serves some of
 * the catalog's models (under the names it gives them) with a quota per model, and has a weight among the
 * deployments of the same model.
 *
 * `PLOT_ENGINE_DEPLOYMENTS_FILE` names a JSON file of them; without it, `OPENAI_API_KEY` / `ANTHROPIC_API_KEY`
 * (and their base URLs) are the one-deployment-per-provider shorthand.
 *
 * @example
 * ```json
 * {
 *   "deployments": [
 *     { "id": "openai-main", "dialect": "openai-responses", "apiKeyEnv": "OPENAI_API_KEY" },
 *     {
 *       "id": "openai-second-org",
 *       "dialect": "openai-responses",
 *       "apiKeyEnv": "OPENAI_SECOND_ORG_KEY",
 *       "headers": { "OpenAI-Organization": "org-second" },
 *       "models": [{ "model": "gpt-4.1", "quota": { "requestsPerMinute": 500, "tokensPerMinute": 200000 } }],
 *       "weight": 2
 *     }
 *   ]
 * }
 * ```
 *
 * @since 0.2.0
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import type * as Domain from "./Domain.js"
import * as Errors from "./Errors.js"
import * as ConfigValues from "./internal/configValues.js"
import * as ModelCatalog from "./ModelCatalog.js"

// =============================================================================
// Models
// =============================================================================

/**
 * The wire a deployment speaks, named after its API.
 *
 * @since 0.2.0
 * @category Models
 */
export const Dialect = Schema.Literal("openai-responses", "anthropic-messages").annotations({
  message: () => ({ message: `must be "openai-responses" or "anthropic-messages"`, override: true })
})

/**
 * @since 0.2.0
 * @category Models
 */
export type Dialect = typeof Dialect.Type

/**
 * The catalog's provider whose models a dialect serves.
 *
 * @since 0.2.0
 * @category Models
 */
export const providerOf = (dialect: Dialect): Domain.ProviderName =>
  dialect === "openai-responses" ? "openai" : "anthropic"

/**
 * The quota a deployment has for one model: requests and tokens per minute (OpenAI-style `tokensPerMinute`, or
 * Anthropic-style input and output tokens per minute), and how many at a time (default 5).
 *
 * @since 0.2.0
 * @category Models
 */
export const ModelQuota = Schema.Struct({
  requestsPerMinute: Schema.Int.pipe(Schema.positive()),
  tokensPerMinute: Schema.optional(Schema.Int.pipe(Schema.positive())),
  inputTokensPerMinute: Schema.optional(Schema.Int.pipe(Schema.positive())),
  outputTokensPerMinute: Schema.optional(Schema.Int.pipe(Schema.positive())),
  maxConcurrent: Schema.optionalWith(Schema.Int.pipe(Schema.positive()), { default: () => 5 })
})

/**
 * One catalog model a deployment serves: the catalog's id, the name the deployment gives it (an Azure
 * deployment name, a gateway's alias; default the id) and its quota there (default the provider's).
 *
 * @since 0.2.0
 * @category Models
 */
export const ServedModel = Schema.Struct({
  model: Schema.NonEmptyTrimmedString,
  name: Schema.optional(Schema.NonEmptyTrimmedString),
  quota: Schema.optional(ModelQuota)
})

/**
 * @since 0.2.0
 * @category Models
 */
export type ServedModel = typeof ServedModel.Type

/**
 * One deployment, as the engine uses it: the key is `Redacted` and never leaves it.
 *
 * @since 0.2.0
 * @category Models
 */
export interface Deployment {
  /** Names the deployment in limiter keys, metrics and logs: letters, digits, `.`, `_` and `-`. */
  readonly id: string
  readonly dialect: Dialect
  /** The API's base URL (default the provider's public API: OpenAI's with `/v1`, Anthropic's without). */
  readonly baseUrl: string | undefined
  readonly apiKey: Redacted.Redacted
  /** Sent with every request (an organization, a project, a gateway's routing header). */
  readonly headers: Readonly<Record<string, string>>
  /** The catalog models it serves; `undefined`: every model of its dialect's provider, under the catalog's ids. */
  readonly models: ReadonlyArray<ServedModel> | undefined
  /**
   * Its share among the deployments of the same model (default 1); 0 makes it a standby, called only when those with
   * a share have failed or would keep the call waiting longer.
   */
  readonly weight: number
}

/** A deployment as a file writes it: the key inline (`apiKey`) or, better, the variable that holds it. */
const DeploymentEntry = Schema.Struct({
  id: Schema.String.pipe(
    Schema.pattern(/^[A-Za-z0-9._-]{1,64}$/, {
      message: () => "must be 1 to 64 letters, digits, '.', '_' or '-'"
    })
  ),
  dialect: Dialect,
  baseUrl: Schema.optional(
    Schema.String.pipe(Schema.filter(ConfigValues.isHttpUrl, { message: () => "must be an http(s) URL" }))
  ),
  apiKey: Schema.optional(Schema.NonEmptyString),
  apiKeyEnv: Schema.optional(Schema.NonEmptyString),
  headers: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.String })),
  models: Schema.optional(Schema.NonEmptyArray(ServedModel)),
  weight: Schema.optional(Schema.Number.pipe(Schema.nonNegative(), Schema.finite()))
})

/**
 * The deployments file: `{ "deployments": [...] }`.
 *
 * @since 0.2.0
 * @category File
 */
export const DeploymentsFile = Schema.Struct({ deployments: Schema.NonEmptyArray(DeploymentEntry) })

// =============================================================================
// Decisions
// =============================================================================

/**
 * The deployments of a file's JSON text, their keys read from the environment (Effect's `ConfigProvider`) where the
 * file names a variable. A bad field is named (`deployments[1].dialect`), as is a missing key or a repeated id.
 *
 * @since 0.2.0
 * @category File
 */
export const decode = (
  text: string
): Effect.Effect<ReadonlyArray<Deployment>, Errors.RequestValidationError | ConfigError.ConfigError> =>
  Effect.flatMap(
    Schema.decodeUnknown(Schema.parseJson(DeploymentsFile))(text, { onExcessProperty: "error" }).pipe(
      Effect.mapError((error) => {
        const invalid = Errors.RequestValidationError.fromParseError(error)
        // Not JSON, or not an object: the whole file is named.
        return invalid.field === "input"
          ? new Errors.RequestValidationError({ field: "deployments file", reason: invalid.reason })
          : invalid
      })
    ),
    ({ deployments }) =>
      Effect.forEach(deployments, (entry, index) =>
        Effect.gen(function*() {
          const invalid = (name: string, reason: string) =>
            new Errors.RequestValidationError({ field: `deployments[${index}].${name}`, reason })
          if (deployments.findIndex((other) => other.id === entry.id) !== index) {
            return yield* invalid("id", `repeats "${entry.id}"`)
          }
          if ((entry.apiKey === undefined) === (entry.apiKeyEnv === undefined)) {
            return yield* invalid("apiKey", "give one of apiKey or apiKeyEnv")
          }
          const apiKey = entry.apiKey === undefined
            ? Option.getOrUndefined(yield* Config.option(Config.redacted(entry.apiKeyEnv!)))
            : Redacted.make(entry.apiKey)
          if (apiKey === undefined || Redacted.value(apiKey).trim() === "") {
            return yield* invalid("apiKeyEnv", `names ${entry.apiKeyEnv}, which is not set`)
          }
          return {
            id: entry.id,
            dialect: entry.dialect,
            baseUrl: entry.baseUrl,
            apiKey,
            headers: entry.headers ?? {},
            models: entry.models,
            weight: entry.weight ?? 1
          } satisfies Deployment
        }))
  )

/**
 * The one-deployment-per-provider shorthand: a deployment `openai` and one `anthropic` for the providers given a key,
 * serving every model of the catalog.
 *
 * @since 0.2.0
 * @category Constructors
 */
export const shorthand = (
  settings: {
    readonly [provider in Domain.ProviderName]?:
      | { readonly apiKey: Redacted.Redacted; readonly baseUrl?: string | undefined }
      | undefined
  }
): ReadonlyArray<Deployment> =>
  (["openai", "anthropic"] as const).flatMap((provider) => {
    const given = settings[provider]
    return given === undefined ? [] : [
      {
        id: provider,
        dialect: provider === "openai" ? "openai-responses" : "anthropic-messages",
        baseUrl: given.baseUrl,
        apiKey: given.apiKey,
        headers: {},
        models: undefined,
        weight: 1
      } satisfies Deployment
    ]
  })

/**
 * The name a deployment gives a catalog model, when it serves it.
 *
 * @since 0.2.0
 * @category Decisions
 */
export const servedName = (
  deployment: Deployment,
  model: { readonly provider: Domain.ProviderName; readonly id: string }
): string | undefined => {
  if (providerOf(deployment.dialect) !== model.provider) return undefined
  if (deployment.models === undefined) return model.id
  const served = deployment.models.find((entry) => entry.model === model.id)
  return served === undefined ? undefined : served.name ?? served.model
}

/**
 * The limiter's quotas of the deployments' models, by limiter key (`deployment/model`), for
 * `ProviderRateLimiter`'s `keyQuotas`.
 *
 * @since 0.2.0
 * @category Decisions
 */
export const keyQuotas = (
  deployments: ReadonlyArray<Deployment>
): Record<string, typeof ModelQuota.Type> =>
  Object.fromEntries(
    deployments.flatMap((deployment) =>
      (deployment.models ?? []).flatMap((served) =>
        served.quota === undefined ? [] : [[`${deployment.id}/${served.model}`, served.quota] as const]
      )
    )
  )

// =============================================================================
// Configuration
// =============================================================================

/**
 * The deployments of `PLOT_ENGINE_DEPLOYMENTS_FILE`, when it is set (see `decode`).
 *
 * @since 0.2.0
 * @category Configuration
 */
export const fromConfig: Effect.Effect<
  Option.Option<ReadonlyArray<Deployment>>,
  Errors.RequestValidationError | ConfigError.ConfigError,
  FileSystem.FileSystem
> = Effect.gen(function*() {
  const path = yield* Config.option(Config.nonEmptyString("PLOT_ENGINE_DEPLOYMENTS_FILE"))
  if (Option.isNone(path)) return Option.none()
  const fs = yield* FileSystem.FileSystem
  const text = yield* fs.readFileString(path.value).pipe(
    Effect.mapError(() =>
      new Errors.RequestValidationError({ field: "PLOT_ENGINE_DEPLOYMENTS_FILE", reason: `cannot read ${path.value}` })
    )
  )
  const deployments = yield* decode(text)
  // A model its dialect's provider does not have in the catalog would never be chosen, and, pinned, would be called on
  // the wrong API: refused here, by its place in the file (the catalog with `PLOT_ENGINE_MODELS` over it).
  const unserved = unknownModel(deployments, yield* ModelCatalog.load())
  if (unserved !== undefined) return yield* unserved
  return Option.some(deployments)
})

/**
 * The first model a deployment names that is not a catalog model of its dialect's provider, as the error naming its
 * place in the file (`deployments[0].models[1].model`); `undefined` when every one is.
 *
 * @since 0.2.0
 * @category File
 */
export const unknownModel = (
  deployments: ReadonlyArray<Deployment>,
  catalog: ModelCatalog.Catalog
): Errors.RequestValidationError | undefined => {
  for (const [index, deployment] of deployments.entries()) {
    const provider = providerOf(deployment.dialect)
    for (const [at, served] of (deployment.models ?? []).entries()) {
      if (Option.isNone(ModelCatalog.find(catalog, provider, served.model))) {
        const known = catalog.filter((model) => model.provider === provider).map((model) => model.id)
        return new Errors.RequestValidationError({
          field: `deployments[${index}].models[${at}].model`,
          reason: `"${served.model}" is not in the catalog for ${provider} (${
            known.join(", ")
          }); add it with PLOT_ENGINE_MODELS`
        })
      }
    }
  }
  return undefined
}
