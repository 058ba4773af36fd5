// Minimal Android activity: streams a chat reply from an on-device model into a TextView.
// Setup (docs/MOBILE.md): libautark_bindings.so in app/src/main/jniLibs/<abi>/ (cargo ndk),
// the generated uniffi/autark/autark.kt in the sources, and JNA in build.gradle.kts:
//     implementation("net.java.dev.jna:jna:5.17.0@aar")
// The model file must be a real file (it is memory-mapped), e.g. downloaded into filesDir.
package dev.autark.demo

import android.app.Activity
import android.os.Bundle
import android.widget.ScrollView
import android.widget.TextView
import java.io.File
import uniffi.autark.AutarkException
import uniffi.autark.ChatMessage
import uniffi.autark.Model
import uniffi.autark.SessionOptions
import uniffi.autark.TokenSink

class MainActivity : Activity() {
    @Volatile private var stopped = false

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        val text = TextView(this)
        setContentView(ScrollView(this).apply { addView(text) })
        val path = File(filesDir, "smollm2-q4_0.autark").path

        // Loading and generation block: run them off the main thread.
        Thread {
            try {
                Model.load(path).use { model ->
                    model.newSession(SessionOptions(nCtx = 2048u, temperature = 0.7f, seed = 1u)).use { session ->
                        val messages = listOf(ChatMessage(role = "user", content = "Write a haiku about the sea."))
                        session.chatStream(messages, 128u, object : TokenSink {
                            override fun onPiece(piece: String): Boolean {
                                runOnUiThread { text.append(piece) }
                                return !stopped // false stops generation
                            }
                        })
                    }
                }
            } catch (e: AutarkException) {
                runOnUiThread { text.text = "autark: ${e.message}" }
            }
        }.start()
    }

    override fun onDestroy() {
        stopped = true
        super.onDestroy()
    }
}
