package caps

import (
	"errors"
	"fmt"
	"time"
)

// ErrUnavailable means the counts could not be read or written, so the
// caps cannot be enforced.
var ErrUnavailable = errors.New("cannot read or write the code counts")

// SpentError refuses a new code: the total cap Cap is spent.
type SpentError struct {
	Cap Cap
}

func (e *SpentError) Error() string {
	return fmt.Sprintf("the budget of %d new codes is spent", e.Cap.Codes)
}

// FullError refuses a new code: the window of Cap, or of the visitor's
// count when Cap has By, is full for RetryAfter more.
type FullError struct {
	Cap        Cap
	RetryAfter time.Duration
}

func (e *FullError) Error() string {
	if e.Cap.By != "" {
		return fmt.Sprintf("%d new codes per %s for each %s reached", e.Cap.Codes, time.Duration(e.Cap.Per), e.Cap.By)
	}
	return fmt.Sprintf("%d new codes per %s reached", e.Cap.Codes, time.Duration(e.Cap.Per))
}
