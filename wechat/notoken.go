package wechat

import (
	"context"
	"errors"
)

// NoToken is the TokenSource of a Client whose calls carry no access_token
// at all: WeChat Cloud Hosting's open API service authenticates calls made
// from the container itself, over plain http to api.weixin.qq.com:
//
//	c := &wechat.Client{BaseURL: "http://api.weixin.qq.com", Tokens: wechat.NoToken{}}
//
// Such a Client never asks for a token, and a token error from WeChat
// (41001 and the like) is returned as it is, not retried: no other token
// exists to try. Its Token method only reports that it has none, for a
// caller that wraps it by mistake.
type NoToken struct{}

// Token returns ErrNoToken.
func (NoToken) Token(context.Context) (*Token, error) { return nil, ErrNoToken }

// ErrNoToken is returned by NoToken's Token method.
var ErrNoToken = errors.New("wechat: NoToken supplies no token; set it as Client.Tokens, unwrapped, to make calls without one")

// Interface guards
var _ TokenSource = NoToken{}
