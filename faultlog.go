package wxqrcode

import (
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// faultLogEvery is how often one kind of storage fault is logged at most.
const faultLogEvery = 10 * time.Second

// faultLog logs storage faults at most once per faultLogEvery per message,
// with the number it held back, so that a broken storage, which every
// request meets, does not flood the logs.
type faultLog struct {
	logger *zap.Logger

	mu   sync.Mutex
	last map[string]time.Time
	held map[string]int
}

func newFaultLog(logger *zap.Logger) *faultLog {
	return &faultLog{logger: logger, last: map[string]time.Time{}, held: map[string]int{}}
}

func (f *faultLog) warn(msg string, fields ...zap.Field)  { f.log(zapcore.WarnLevel, msg, fields) }
func (f *faultLog) error(msg string, fields ...zap.Field) { f.log(zapcore.ErrorLevel, msg, fields) }

func (f *faultLog) log(level zapcore.Level, msg string, fields []zap.Field) {
	f.mu.Lock()
	now := time.Now()
	if now.Sub(f.last[msg]) < faultLogEvery {
		f.held[msg]++
		f.mu.Unlock()
		return
	}
	held := f.held[msg]
	f.last[msg], f.held[msg] = now, 0
	f.mu.Unlock()
	if held > 0 {
		fields = append(fields, zap.Int("same_faults_not_logged", held))
	}
	if ce := f.logger.Check(level, msg); ce != nil {
		ce.Write(fields...)
	}
}
