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

    @Test func thePauseIsKnownAtOnceHereAndReadAgainWhenStale() {
        let clock = ManualClock()
        let gate = BotBudgetGate(clock: { clock.now })
        #expect(gate.knownPauseMilliseconds() == nil, "never read: ask the store")
        gate.notePauseRead(milliseconds: 0)
        #expect(gate.knownPauseMilliseconds() == 0)
        clock.advance(milliseconds: 249)
        #expect(gate.knownPauseMilliseconds() == 0)
        clock.advance(milliseconds: 1)
        #expect(gate.knownPauseMilliseconds() == nil, "a quarter of a second old: ask again")
        gate.notePauseRead(milliseconds: 0)
        gate.notePaused(milliseconds: 2_000)  // this process met a 429
        #expect(gate.knownPauseMilliseconds() == 2_000)
        clock.advance(milliseconds: 100)
        #expect(gate.knownPauseMilliseconds() == 1_900)
    }
}
