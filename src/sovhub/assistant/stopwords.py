"""Words a question's topic is not made of, in the 8 languages of the bundled locale packs.

Function words, question words, and the words that say *what kind* of answer is wanted (a cost,
a number of days, a date) rather than *what about*: "How much does a divorce cost?" is about a
divorce; a passage that names a fee answers it only if it is a divorce's fee. Written for sovhub
(lower case, the forms the knowledge base's tokenizer produces: apostrophes split words).
"""

from __future__ import annotations

__all__ = ["ANSWER_WORDS", "STOP_WORDS"]

_FUNCTION = {
    "en": """a an the is are was were be been being am do does did done have has had i me my mine myself you
        your yours we our us he she it its they them their this that these those what which who whom whose when
        where why how there here of in on at to for from by with about as into over under after before within
        between during and or but if than then so not no can could would should will shall may might must need
        needs get gets got take takes taken make please tell know want like any some all each every also very just
        only s""",
    "uk": """я мене мені мій моя моє мої мого моєї моїх ти тебе ви вас вам ваш ваша ваше він вона воно вони це цей
        ця ці той та ті що який яка яке які якого якої яких котрий хто де коли чому як чи і й а але або в у на з із
        зі до від для по за при про через після перед протягом між над під є був була було були бути буде будуть
        можна треба потрібно необхідно має мати маю може можу мусить слід будь ласка не ні так же ж би б також""",
    "pl": """ja mnie mi mój moja moje mojego mojej ty ciebie wy pan pani on ona ono oni to ten ta te tego tej co
        jaki jaka jakie jakiego jakiej który która które kto gdzie kiedy dlaczego jak czy i oraz a ale lub albo w
        we na z ze do od dla po za przy o przez przed między nad pod jest są był była było były być będzie można
        trzeba należy musi muszę się nie tak też proszę mogę ciągu""",
    "de": """ich mich mir mein meine meinen meinem meiner du sie er es wir ihr ihre ihnen der die das den dem des
        ein eine einen einem einer was welche welcher welches welchen wer wo wann warum wie ist sind war waren
        sein wird werden wurde kann können muss müssen soll sollte darf und oder aber in im an am auf aus bei mit
        nach von vom zu zum zur für über unter vor innerhalb zwischen durch nicht kein keine bitte auch gibt man
        lautet""",
    "fr": """je j me m moi mon ma mes tu te t vous votre vos il elle ils elles on le la les l un une des du de d
        au aux ce cet cette ces qui que qu quoi quel quelle quels quelles où quand pourquoi comment est sont être
        été a ai avez ont avoir faut peut peux puis dois doit et ou mais dans en sur sous pour par avec sans chez
        après avant pendant entre ne n pas plus s se sa son ses y""",
    "es": """yo me mi mis mío tú te tu tus usted ustedes su sus él ella ellos ellas nosotros el la los las lo un
        una unos unas de del al a qué que cuál cuáles quién dónde cuándo por cómo es son está están ser estar fue
        hay ha han tiene tengo puede puedo debe debo hace y o pero en con sin para sobre entre desde hasta antes
        después no sí se le les""",
    "ar": """من في على إلى الى عن مع هل ما ماذا متى أين اين كيف لماذا أي اي هو هي هم أنا انا أنت انت نحن هذا
        هذه ذلك تلك الذي التي و أو او ثم لا نعم يجب يمكن قد كان يكون تم عند بعد قبل خلال بين حتى إذا اذا لي""",
    "ja": """私 僕 誰 必要 場合 方法 教 下""",
}

# What kind of answer is wanted: amounts, durations, dates, counts.
_ANSWER = {
    "en": """much many long cost costs price prices fee fees pay paid charge amount day days time date deadline
        often""",
    "uk": """скільки скількох коштує коштуватиме вартість ціна ціну мито платити плата сума днів дні день часу
        час термін дата дату""",
    "pl": """ile ilu kosztuje koszt cena cenę opłata opłatę wynosi kwota dni dzień długo czas termin data dnia""",
    "de": """viel viele vieler lange kostet kosten preis gebühr gebühren betrag beträgt hoch tage tagen tag zeit
        dauert frist datum""",
    "fr": """combien coûte coûtent coût prix droit frais montant jour jours temps délai date""",
    "es": """cuánto cuánta cuántos cuántas cuesta cuestan coste precio tasa importe días día tiempo plazo fecha
        tarda""",
    "ar": """كم تكلفة سعر رسوم يوم يومًا يوما أيام ايام مدة تاريخ يستغرق""",
    # Japanese: runs of kanji or katakana (the kana between them are particles and endings).
    "ja": """何 何日 何日以内 日以内 以内 何日前 日前 手数料 料金 値段 費用 期間 時間 何時 何年 何歳 日数""",
}

STOP_WORDS: frozenset[str] = frozenset(w for text in _FUNCTION.values() for w in text.split())
ANSWER_WORDS: frozenset[str] = frozenset(w for text in _ANSWER.values() for w in text.split())
