/**
 * Node flags a spareband node runs with: the `spareband` command's shebang,
 * `npm start`, the testnet's child nodes and the benches all pass these.
 * Apps that embed the library should start node with them too (for example
 * `NODE_OPTIONS=--max-semi-space-size=1`); they are tuning, not correctness.
 *
 * `--max-semi-space-size=1` (MiB; node's default lets the young generation
 * grow to 16): every chunk a node carries is an ArrayBuffer (socket reads,
 * noise's ciphertext and plaintext) whose memory lives outside the JS heap.
 * A large young generation is scavenged seldom, so dead buffers pile up
 * outside the heap until V8's external-memory limit starts a full
 * mark-compact of the whole heap, about every 15 MiB carried. With a small
 * young generation the buffers die in cheap scavenges instead. On the tunnel
 * bench this halved CPU per MiB (14-17 ms to about 8 ms, GC helper threads
 * from ~45 % of the CPU to under 10 %) and raised bare-stream and tunnel
 * throughput by ~70 %.
 */
export const NODE_RUNTIME_FLAGS: readonly string[] = ['--max-semi-space-size=1']
