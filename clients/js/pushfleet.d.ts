/** Close codes with a meaning for the client. */
export declare const CloseCode: {
  readonly NORMAL: 1000;
  readonly DRAINING: 1001;
  readonly POLICY: 1008;
  readonly TOO_BIG: 1009;
  readonly TRY_AGAIN: 1013;
};

export type State = "connecting" | "open" | "reconnecting" | "closed";

export interface MessageMeta {
  /** The channel the batch arrived on ("*" for broadcasts). */
  channel: string;
  /** Position of the message in its batch. */
  index: number;
  /** Number of messages in the batch. */
  batchSize: number;
}

export interface PushfleetError {
  code: string;
  message: string;
  id?: number | string;
  /**
   * The channels of the refused subscribe. With `forbidden`, `invalid_channel` or
   * `too_many_subscriptions` the channel is dropped: no handler of it is called and no
   * reconnect subscribes it again.
   */
  channels?: string[];
}

export interface PushfleetOptions {
  /** Connect token (sent as ?token=). */
  token?: string;
  /** Channels to subscribe at connect (and after every reconnect). */
  channels?: string[];
  /** Reconnect delay ceilings, ms: full jitter in [0, min(maxDelay, minDelay·2^attempt)]. */
  minDelay?: number;
  maxDelay?: number;
  /** Delay ceiling after a 1001 (server draining), ms. */
  drainDelay?: number;
  /** Ping after this long without any frame, ms. */
  pingInterval?: number;
  /** Reconnect when nothing arrives this long after a ping, ms. */
  pongTimeout?: number;
  /** WebSocket implementation (defaults to globalThis.WebSocket). */
  WebSocket?: unknown;
  /** Random source in [0, 1), for tests. */
  random?: () => number;
}

export type Handler = (message: unknown, meta: MessageMeta) => void;

export declare function backoffDelay(
  attempt: number,
  options?: { minDelay: number; maxDelay: number },
  random?: () => number,
): number;

export declare class Pushfleet {
  constructor(url: string, options?: PushfleetOptions);
  readonly url: string;
  readonly state: State;
  readonly channels: string[];
  subscribe(channel: string, handler?: Handler): () => void;
  unsubscribe(channel: string, handler?: Handler): void;
  on(event: "state", fn: (state: State) => void): () => void;
  on(event: "error", fn: (error: PushfleetError) => void): () => void;
  on(event: "batch", fn: (channel: string, messages: unknown[]) => void): () => void;
  close(): void;
}

export default Pushfleet;
