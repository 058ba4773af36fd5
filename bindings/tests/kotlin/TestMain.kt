// Checks of the generated Kotlin on the host JVM (bindings/test-kotlin.sh MODEL). Prints the
// greedy continuation between <<< and >>> (tests/python/test_bindings.py compares it with the
// CLI) and "kotlin: all checks passed" at the end; any failed check exits non-zero.
package dev.autark.test

import uniffi.autark.AutarkException
import uniffi.autark.ChatMessage
import uniffi.autark.Model
import uniffi.autark.SessionOptions
import uniffi.autark.StopReason
import uniffi.autark.TokenSink
import kotlin.concurrent.thread
import kotlin.system.exitProcess

const val PROMPT = "The capital of France is"

fun check(ok: Boolean, what: () -> String) {
    if (!ok) {
        System.err.println("kotlin: FAILED: ${what()}")
        exitProcess(1)
    }
}

class Collect(private val stopAfter: Int = Int.MAX_VALUE) : TokenSink {
    val pieces = mutableListOf<String>()

    override fun onPiece(piece: String): Boolean {
        pieces.add(piece)
        return pieces.size < stopAfter
    }
}

fun greedy(nThreads: UInt = 0u) = SessionOptions(temperature = 0.0f, nThreads = nThreads)

fun main(args: Array<String>) {
    val path = args.single()
    val model = Model.load(path)
    val meta = model.metadata()
    check(meta.architecture == "llama") { "architecture ${meta.architecture}" }
    check(meta.nCtxTrain == 8192u) { "nCtxTrain ${meta.nCtxTrain}" }
    check(SessionOptions().temperature == 0.8f && SessionOptions().topK == 40u) { "defaults ${SessionOptions()}" }

    val session = model.newSession(greedy())
    val text = session.generate(PROMPT, 24u)
    System.out.write("<<<$text>>>\n".toByteArray(Charsets.UTF_8))
    check(session.lastStats()?.generatedTokens == 24u) { "stats ${session.lastStats()}" }

    val all = Collect()
    session.reset()
    session.generateStream(PROMPT, 24u, all)
    check(all.pieces.size > 5 && all.pieces.joinToString("") == text) { "stream ${all.pieces}" }

    val three = Collect(stopAfter = 3)
    val stats = model.newSession(greedy()).generateStream(PROMPT, 24u, three)
    check(three.pieces.size == 3 && stats.stop == StopReason.CANCELLED) { "stop: ${three.pieces} $stats" }
    check(text.startsWith(three.pieces.joinToString(""))) { "stopped text ${three.pieces}" }

    val reply = session.chat(listOf(ChatMessage(role = "user", content = "Hi")), 16u)
    check(reply.isNotEmpty()) { "empty chat reply" }

    try {
        Model.load("/no/such/model.autark")
        check(false) { "loading a missing file did not throw" }
    } catch (e: AutarkException.Io) {
        check(e.detail.contains("/no/such/model.autark")) { e.detail }
    }
    try {
        model.newSession(SessionOptions(nCtx = 8u)).generate(PROMPT.repeat(4), 4u)
        check(false) { "context overflow did not throw" }
    } catch (e: AutarkException.ContextOverflow) {
        check(e.nCtx == 8u && e.needed > 8u) { "overflow ${e.needed} ${e.nCtx}" }
    }
    try {
        model.newSession(SessionOptions(topP = 0.0f))
        check(false) { "top_p = 0 did not throw" }
    } catch (e: AutarkException.InvalidArgument) {
    }

    // Two sessions of one model on two threads agree with the single-thread text.
    val prompts = listOf(PROMPT, "Once upon a time")
    val alone = prompts.map { model.newSession(greedy(1u)).generate(it, 24u) }
    val results = arrayOfNulls<String>(prompts.size)
    val workers = prompts.mapIndexed { i, p ->
        val s = model.newSession(greedy(1u))
        thread { results[i] = s.generate(p, 24u) }
    }
    workers.forEach { it.join() }
    check(results.toList() == alone) { "threads ${results.toList()} vs $alone" }

    session.close()
    model.close()
    println("kotlin: all checks passed")
}
