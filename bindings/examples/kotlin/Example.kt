// The bindings from Kotlin (JVM or Android): load a model, generate, stream, chat, handle errors.
// Needs the generated uniffi/autark/autark.kt (bindings/generate.sh kotlin OUTDIR), JNA, and
// libautark_bindings.so on JNA's library path (Android: jniLibs/<abi>/, see docs/MOBILE.md).
// bindings/test-kotlin.sh compiles this file; run it with a model path as the only argument.
package dev.autark.example

import uniffi.autark.AutarkException
import uniffi.autark.ChatMessage
import uniffi.autark.Model
import uniffi.autark.SessionOptions
import uniffi.autark.TokenSink

/** Prints each piece as it arrives; returning false would stop generation. */
class PrintSink : TokenSink {
    override fun onPiece(piece: String): Boolean {
        print(piece)
        System.out.flush()
        return true
    }
}

fun runExample(modelPath: String) {
    // Model and Session hold native memory: `use` frees it (or call close()).
    Model.load(modelPath).use { model ->
        val meta = model.metadata()
        println("${meta.architecture}, ${meta.nParams} parameters, ${meta.quantTypes.joinToString()}")

        model.newSession(SessionOptions(nCtx = 1024u, temperature = 0.0f)).use { session ->
            // Blocking: on Android call it off the main thread.
            println(session.generate("The capital of France is", 24u))

            session.generateStream("Once upon a time", 32u, PrintSink())
            println()

            val reply = session.chat(listOf(ChatMessage(role = "user", content = "Say hello.")), 32u)
            println(reply)
            println("${session.lastStats()?.generatedTokens} tokens generated")
        }
    }
    try {
        Model.load("/no/such/model.autark")
    } catch (e: AutarkException.Io) {
        println("as expected: ${e.detail}")
    }
}

fun main(args: Array<String>) {
    runExample(args.firstOrNull() ?: error("usage: Example MODEL.autark"))
}
