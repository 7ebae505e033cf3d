import GatewayCore
import GatewayTestSupport
import Testing

/// A process's view of the bot-wide budget between its calls to Redis.
@Suite struct BotBudgetGateTests {
    @Test func aRefusalRefusesLocallyWhatCannotWaitUntilTheSoonestSlot() {
        let clock = ManualClock()
        let gate = BotBudgetGate(clock: { clock.now })
        #expect(!gate.refuses(maxWaitMilliseconds: 0), "nothing known: ask")
        gate.noteRefused(soonestMilliseconds: 400)
        #expect(gate.refuses(maxWaitMilliseconds: 0))
        #expect(gate.refuses(maxWaitMilliseconds: 399))
        #expect(!gate.refuses(maxWaitMilliseconds: 400), "a send that may wait that long asks")
        gate.noteRefused(soonestMilliseconds: 100)
        #expect(gate.refuses(maxWaitMilliseconds: 300), "a later refusal never shortens what is known")
        clock.advance(milliseconds: 400)
        #expect(!gate.refuses(maxWaitMilliseconds: 0))
    }
}
