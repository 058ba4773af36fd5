// Minimal Swift usage (iOS or macOS): load a model, generate, stream into SwiftUI.
// Setup (docs/MOBILE.md): add Autark.xcframework (static library + autarkFFI module) and the
// generated autark.swift to the app target; then no import is needed for these types.
import Foundation
import SwiftUI

/// Hands each piece of text to a closure; returning false would stop generation.
final class PieceSink: TokenSink {
    let onText: @Sendable (String) -> Void

    init(onText: @escaping @Sendable (String) -> Void) {
        self.onText = onText
    }

    func onPiece(piece: String) throws -> Bool {
        onText(piece)
        return true
    }
}

/// Blocking calls, e.g. from a command-line tool or a background task.
func runExample(modelPath: String) {
    do {
        let model = try Model.load(path: modelPath)
        let meta = model.metadata()
        print("\(meta.architecture): \(meta.nParams) parameters, \(meta.quantTypes.joined(separator: ", "))")

        let session = try model.newSession(options: SessionOptions(nCtx: 1024, temperature: 0))
        print(try session.generate(prompt: "The capital of France is", maxTokens: 24))

        _ = try session.generateStream(prompt: "Once upon a time", maxTokens: 32,
                                       sink: PieceSink { piece in print(piece, terminator: "") })
        print()

        let reply = try session.chat(messages: [ChatMessage(role: "user", content: "Say hello.")], maxTokens: 32)
        print(reply)
    } catch AutarkError.Io(let detail) {
        print("cannot open the model: \(detail)")
    } catch AutarkError.ContextOverflow(let needed, let nCtx, _) {
        print("prompt too long: \(needed) tokens, the context holds \(nCtx)")
    } catch {
        print("autark: \(error)")
    }
}

/// Streams a chat reply into a SwiftUI view; generation runs off the main actor.
@MainActor
final class ChatViewModel: ObservableObject {
    @Published var reply = ""

    func ask(_ question: String, modelPath: String) {
        reply = ""
        Task.detached(priority: .userInitiated) {
            do {
                let model = try Model.load(path: modelPath)
                let session = try model.newSession(options: SessionOptions(nCtx: 2048, temperature: 0.7))
                let sink = PieceSink { piece in
                    Task { @MainActor in self.reply += piece }
                }
                _ = try session.chatStream(messages: [ChatMessage(role: "user", content: question)],
                                           maxTokens: 256, sink: sink)
            } catch {
                await MainActor.run { self.reply = "autark: \(error)" }
            }
        }
    }
}

struct ChatView: View {
    @StateObject private var vm = ChatViewModel()
    let modelPath: String

    var body: some View {
        VStack {
            ScrollView { Text(vm.reply).frame(maxWidth: .infinity, alignment: .leading) }
            Button("Ask") { vm.ask("Write a haiku about the sea.", modelPath: modelPath) }
        }
        .padding()
    }
}
