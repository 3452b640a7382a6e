//! Block-wise helpers (RFC 7959): the option value, Block1 reassembly with EMQX's answers, and
//! Block2 slicing at the block boundaries.

use bytes::Bytes;
use portico_coap::options::number;
use portico_coap::*;

fn block(num: u32, more: bool, szx: u8) -> Block {
    Block::new(num, more, szx).expect("valid block")
}

#[test]
fn block_option_values() {
    // RFC 7959 §2.2: NUM << 4 | M << 3 | SZX, as a minimal uint.
    let cases: &[(Block, &[u8])] = &[
        (block(0, false, 0), &[]),
        (block(0, true, 6), &[0x0e]),
        (block(1, false, 2), &[0x12]),
        (block(15, true, 6), &[0xfe]),
        (block(16, false, 4), &[0x01, 0x04]),
        (block(4095, true, 0), &[0xff, 0xf8]),
        (block(4096, false, 6), &[0x01, 0x00, 0x06]),
        (block(MAX_NUM_FOR_TEST, true, 6), &[0xff, 0xff, 0xfe]),
    ];
    for (b, value) in cases {
        let mut options = Options::new();
        options.set_block2(*b);
        assert_eq!(
            options.get(number::BLOCK2).map(|v| v.to_vec()),
            Some(value.to_vec()),
            "{b:?}"
        );
        assert_eq!(Block::from_value(value), Ok(*b));
        assert_eq!(options.block2(), Some(*b));
    }
    assert_eq!(block(2, false, 6).size(), 1024);
    assert_eq!(block(2, false, 0).size(), 16);
    assert_eq!(block(2, false, 6).offset(), 2048);
    assert_eq!(Block::from_value(&[0x07]), Err(BlockError::ReservedSzx));
    assert_eq!(Block::from_value(&[0, 0, 0, 1]), Err(BlockError::TooLong(4)));
    assert_eq!(Block::new(0, false, 7), Err(BlockError::ReservedSzx));
    assert_eq!(Block::new(1 << 20, false, 0), Err(BlockError::NumTooLarge(1 << 20)));
    // Leading zeros are accepted on reception.
    assert_eq!(Block::from_value(&[0x00, 0x00, 0x12]), Ok(block(1, false, 2)));
    assert_eq!(Block::szx_for_size(1024), Some(6));
    assert_eq!(Block::szx_for_size(16), Some(0));
    assert_eq!(Block::szx_for_size(1000), None);
    assert_eq!(Block::szx_for_size(2048), None);
}

const MAX_NUM_FOR_TEST: u32 = portico_coap::block::MAX_NUM;

fn chunk(byte: u8, len: usize) -> Bytes {
    Bytes::from(vec![byte; len])
}

#[test]
fn block1_in_order_continues_then_completes() {
    let mut a = Block1Assembler::new(1000);
    assert_eq!(
        a.push(block(0, true, 0), &chunk(b'a', 16)),
        Ok(Block1Step::Continue(block(0, true, 0)))
    );
    assert_eq!(
        a.push(block(1, true, 0), &chunk(b'b', 16)),
        Ok(Block1Step::Continue(block(1, true, 0)))
    );
    assert_eq!(a.expected(), Some(2));
    assert_eq!(a.received(), 32);
    let Ok(Block1Step::Complete { body, block: last }) = a.push(block(2, false, 0), &chunk(b'c', 5)) else {
        panic!("the last block completes the body");
    };
    assert_eq!(body.len(), 37);
    assert_eq!(&body[..], [vec![b'a'; 16], vec![b'b'; 16], vec![b'c'; 5]].concat());
    assert_eq!(last, block(2, false, 0));
    assert_eq!(a.expected(), None, "ready for the next body");
}

#[test]
fn block1_single_block_body_is_not_copied() {
    let mut a = Block1Assembler::new(1000);
    let payload = chunk(b'x', 10);
    let Ok(Block1Step::Complete { body, .. }) = a.push(block(0, false, 6), &payload) else {
        panic!("one block is a whole body");
    };
    assert_eq!(body.as_ptr(), payload.as_ptr());
}

#[test]
fn block1_out_of_order_is_request_entity_incomplete() {
    let mut a = Block1Assembler::new(1000);
    // A body that does not start at block 0.
    let e = a.push(block(1, true, 0), &chunk(b'a', 16)).expect_err("no block 0");
    assert_eq!(e, Block1Error::OutOfOrder { expected: 0, got: 1 });
    assert_eq!(e.code(), Code::REQUEST_ENTITY_INCOMPLETE);
    // A gap.
    a.push(block(0, true, 0), &chunk(b'a', 16)).expect("block 0");
    let e = a.push(block(2, true, 0), &chunk(b'a', 16)).expect_err("gap");
    assert_eq!(e, Block1Error::OutOfOrder { expected: 1, got: 2 });
    assert_eq!(e.code(), Code::REQUEST_ENTITY_INCOMPLETE);
    assert_eq!(a.expected(), None, "an error resets the assembler");
    // A repeated block after the reset is out of order too.
    assert!(a.push(block(1, true, 0), &chunk(b'a', 16)).is_err());
}

#[test]
fn block1_size_change_is_request_entity_incomplete() {
    let mut a = Block1Assembler::new(10_000);
    a.push(block(0, true, 6), &chunk(b'a', 1024)).expect("block 0");
    let e = a
        .push(block(1, true, 5), &chunk(b'a', 512))
        .expect_err("smaller blocks");
    assert_eq!(e, Block1Error::SizeChanged { was: 1024, now: 512 });
    assert_eq!(e.code(), Code::REQUEST_ENTITY_INCOMPLETE);
}

#[test]
fn block1_body_too_large_is_request_entity_too_large() {
    let mut a = Block1Assembler::new(40);
    a.push(block(0, true, 0), &chunk(b'a', 16)).expect("16");
    a.push(block(1, true, 0), &chunk(b'a', 16)).expect("32");
    let e = a.push(block(2, true, 0), &chunk(b'a', 16)).expect_err("48 > 40");
    assert_eq!(e, Block1Error::TooLarge { max: 40 });
    assert_eq!(e.code(), Code::REQUEST_ENTITY_TOO_LARGE);
    // Exactly the maximum is fine.
    let mut a = Block1Assembler::new(40);
    a.push(block(0, true, 0), &chunk(b'a', 16)).expect("16");
    a.push(block(1, true, 0), &chunk(b'a', 16)).expect("32");
    assert!(matches!(
        a.push(block(2, false, 0), &chunk(b'a', 8)),
        Ok(Block1Step::Complete { .. })
    ));
    // A first block larger than the maximum.
    let mut a = Block1Assembler::new(10);
    assert_eq!(
        a.push(block(0, false, 0), &chunk(b'a', 16)),
        Err(Block1Error::TooLarge { max: 10 })
    );
}

#[test]
fn block1_payload_must_fill_its_block() {
    let mut a = Block1Assembler::new(1000);
    let e = a
        .push(block(0, true, 0), &chunk(b'a', 15))
        .expect_err("short non-final block");
    assert_eq!(
        e,
        Block1Error::WrongPayloadLength {
            num: 0,
            len: 15,
            size: 16
        }
    );
    assert_eq!(e.code(), Code::BAD_REQUEST);
    let e = a
        .push(block(0, false, 0), &chunk(b'a', 17))
        .expect_err("oversized last block");
    assert_eq!(e.code(), Code::BAD_REQUEST);
}

#[test]
fn block1_zero_restarts_the_body() {
    let mut a = Block1Assembler::new(1000);
    a.push(block(0, true, 0), &chunk(b'a', 16)).expect("0");
    a.push(block(1, true, 0), &chunk(b'a', 16)).expect("1");
    a.push(block(0, true, 1), &chunk(b'b', 32))
        .expect("restart with another size");
    let Ok(Block1Step::Complete { body, .. }) = a.push(block(1, false, 1), &chunk(b'c', 1)) else {
        panic!("completes");
    };
    assert_eq!(&body[..], [vec![b'b'; 32], vec![b'c']].concat());
}

#[test]
fn block2_slices_at_the_boundaries() {
    let body = Bytes::from((0..=255u8).cycle().take(64).collect::<Vec<u8>>());
    let slice = |len: usize, num: u32| {
        let body = body.slice(..len);
        block2_slice(&body, block(num, false, 0)).map(|(b, opt)| (b.len(), opt.num(), opt.more()))
    };
    // 16-byte blocks.
    assert_eq!(slice(0, 0), Some((0, 0, false)), "block 0 of an empty body");
    assert_eq!(slice(0, 1), None);
    assert_eq!(slice(15, 0), Some((15, 0, false)));
    assert_eq!(slice(16, 0), Some((16, 0, false)), "exactly one block");
    assert_eq!(slice(16, 1), None, "nothing after an exact block");
    assert_eq!(slice(17, 0), Some((16, 0, true)));
    assert_eq!(slice(17, 1), Some((1, 1, false)));
    assert_eq!(slice(32, 1), Some((16, 1, false)));
    assert_eq!(slice(33, 1), Some((16, 1, true)));
    assert_eq!(slice(33, 2), Some((1, 2, false)));
    assert_eq!(slice(33, 3), None);
    // The slice is the right part of the body, shared, not copied; the request's M is ignored.
    let (part, opt) = block2_slice(&body, block(2, true, 0)).expect("in range");
    assert_eq!(&part[..], &body[32..48]);
    assert_eq!(opt, block(2, true, 0));
    assert_eq!(part.as_ptr(), body[32..].as_ptr());
    let (last, opt) = block2_slice(&body, block(1, true, 1)).expect("in range");
    assert_eq!((last.len(), opt.more()), (32, false));
}
