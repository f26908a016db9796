"""Personal data held by personalization (see privacy.registry).

Segments, archetypes, content slots, category rules and item co-occurrence are
about content and aggregates, not people; the rows below tie a person to them.
Erasing a session or a profile also cascades to these rows.
"""

from privacy.registry import PersonalData

PERSONAL_DATA = [
    PersonalData(
        model="personalization.SessionInterest",
        links={"sessions": "session"},
        description="The interest weights (by category) inferred from one visit's events.",
    ),
    PersonalData(
        model="personalization.ProfileInterest",
        links={"profiles": "profile"},
        unlinked={"session_count": "a number of sessions, not a reference to any"},
        description="Interest weights and engagement inferred across the person's sessions and devices.",
    ),
    PersonalData(
        model="personalization.SegmentMembership",
        links={"sessions": "session"},
        description="The rule segments a visit belonged to at the last materialization.",
    ),
    PersonalData(
        model="personalization.ArchetypeMembership",
        links={"profiles": "profile"},
        description="The archetype (cluster of interests) the person was assigned to.",
    ),
]
