/*
 * replay.h - `murmur-ddb replay`: parked poison pills, run again.
 *
 * Provides: mm_replay_main, the command users recover with after fixing a
 * decoder:
 *
 *   murmur-ddb replay --from sqs://QUEUE_URL | --from FILE --script decode.lua
 *                     [--store URL] [--dedup URL|off] [--max N] [--batch N]
 *                     [--wait S] [--visibility S]
 *
 * It reads the messages dlq.h parked (SQS ReceiveMessage, or the JSON lines
 * of a file written by `invoke --dlq FILE`), rebuilds stream events
 * ({"Records":[...]}, at most --batch records each, default 100) from the
 * records they carry, runs them through the pipeline API with the given
 * script and store (no dead-letter queue: MURMUR_DLQ is ignored, so a
 * record that still fails is not parked twice), and removes a message only
 * when its record now succeeds: merged, skipped by the script (decode
 * returned nil, or no keys) or already applied (dedup). Everything else is
 * kept and reported on stderr with the reason:
 *   - the record still fails to decode, or its merge failed;
 *   - the body was truncated when parked (too large for one message): it
 *     cannot be replayed;
 *   - the body is not a version 1 message, or was parked by another
 *     pipeline (its "pipeline" differs from the script's name);
 *   - its record is not a DynamoDB stream record.
 * Within one run a message whose eventID was already replayed is removed
 * without being run again (a record parked twice merges once); across runs
 * that takes dedup (--dedup, MURMUR_DEDUP): with dedup on, replay merges a
 * record exactly once however often it was parked or replayed.
 *
 * Sources:
 *   sqs://URL    messages are received 10 at a time, hidden for
 *                --visibility seconds (default 60) and long-polled for
 *                --wait seconds (default 1); removed with DeleteMessageBatch.
 *                Kept messages reappear after the visibility timeout. The
 *                loop stops at the first empty receive, when a receive
 *                brings only messages already seen, or after --max messages
 *                (default 10000). On a FIFO queue a kept message blocks the
 *                rest of its group until it reappears (FIFO order).
 *   FILE         (or file://FILE) read line by line, never changed; the
 *                lines still kept are written, byte for byte and in order,
 *                to FILE.remaining (replaced; empty when every line was
 *                replayed), so the next attempt is
 *                `replay --from FILE.remaining`.
 *
 * --store and --dedup default as for `invoke`: MURMUR_STORE / MURMUR_DEDUP,
 * else sqlite://murmur.db; dedup defaults to that file only when the store
 * does too (replaying into another store without --dedup runs with dedup
 * off, and says so).
 *
 * Output: one JSON summary line on stdout, {"read", "replayed", "removed",
 * "kept", "stillPoison", "failed", "truncated", "skippedOther",
 * "duplicates", "deleteFailures"}; logs on stderr.
 * Exit status: 0 every message read was replayed and removed, 3 some were
 * kept (or could not be deleted), 1 the run could not start or read its
 * source, 2 usage.
 *
 * Relies on dlq.h (SQS), pipeline.h (and its per-record callback),
 * config.h, event.h, json.h, log.h.
 */
#ifndef MM_REPLAY_H
#define MM_REPLAY_H

/* Exit status when some messages were kept. */
#define MM_REPLAY_EXIT_KEPT 3

/* argv[0] is the command's name ("replay", ignored); options follow. Reads
 * the environment (config.h) itself. Returns the exit status above. */
int mm_replay_main(int argc, char **argv);

#endif
